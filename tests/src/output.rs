//! Component stdout and stderr: forwarded line by line to the host's stderr with the component
//! id as prefix, and kept in a per-component buffer for tests.

use std::collections::HashMap;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The captured output of every component, by component id. Clones share the buffers.
#[derive(Clone, Debug, Default)]
pub struct OutputBuffers {
    buffers: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl OutputBuffers {
    /// Everything `component_id` wrote to stdout and stderr since the last clear, in write
    /// order, with invalid UTF-8 replaced.
    pub fn get(&self, component_id: &str) -> String {
        let buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        buffers
            .get(component_id)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default()
    }

    /// Empties the buffer of `component_id`.
    pub fn clear(&self, component_id: &str) {
        let mut buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        buffers.remove(component_id);
    }

    /// Creates a WASI stdout or stderr for one instance of `component_id`.
    pub(crate) fn stream(&self, component_id: &str) -> ComponentOutput {
        ComponentOutput { component_id: Arc::from(component_id), buffers: self.clone() }
    }

    fn append(&self, component_id: &str, bytes: &[u8]) {
        let mut buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        buffers.entry(component_id.to_string()).or_default().extend_from_slice(bytes);
    }
}

/// The `StdoutStream` given to `WasiCtxBuilder::stdout` and `stderr`.
pub(crate) struct ComponentOutput {
    component_id: Arc<str>,
    buffers: OutputBuffers,
}

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ComponentOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

impl ComponentOutput {
    fn writer(&self) -> LineWriter {
        LineWriter {
            component_id: self.component_id.clone(),
            buffers: self.buffers.clone(),
            partial_line: Vec::new(),
        }
    }
}

/// Appends writes to the capture buffer and prints each complete line to the host's stderr.
/// A last line without a newline is printed when the stream is dropped.
struct LineWriter {
    component_id: Arc<str>,
    buffers: OutputBuffers,
    partial_line: Vec<u8>,
}

impl LineWriter {
    fn write_bytes(&mut self, bytes: &[u8]) {
        self.buffers.append(&self.component_id, bytes);
        self.partial_line.extend_from_slice(bytes);
        while let Some(newline) = self.partial_line.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial_line.drain(..=newline).collect();
            self.print(&line[..line.len() - 1]);
        }
    }

    fn print(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        // A failed write to the host's stderr leaves nothing useful to report it to.
        let _ = writeln!(std::io::stderr().lock(), "[{}] {line}", self.component_id);
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial_line.is_empty() {
            let line = std::mem::take(&mut self.partial_line);
            self.print(&line);
        }
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_captures_per_component() {
        let buffers = OutputBuffers::default();
        let mut api = buffers.stream("api").writer();
        let mut cron = buffers.stream("cron").writer();
        api.write_bytes(b"hello\nwor");
        cron.write_bytes(b"tick\n");
        api.write_bytes(b"ld\n");
        assert_eq!(buffers.get("api"), "hello\nworld\n");
        assert_eq!(buffers.get("cron"), "tick\n");
        buffers.clear("api");
        assert_eq!(buffers.get("api"), "");
        assert_eq!(buffers.get("cron"), "tick\n");
    }
}
