//! The `fake-kube` command: one fake cluster in the foreground until Ctrl-C.

use std::net::SocketAddr;

use anyhow::{bail, Context as _};

use crate::{check_loopback, FakeCluster, FakeClusterConfig};

const USAGE: &str = "\
Usage: fake-kube --listen ADDR --token TOKEN [--namespace NS]... [--name NAME] [--log-requests]

Serves one fake Kubernetes API cluster over plain HTTP until Ctrl-C.

Options:
  --listen ADDR       loopback address and port to listen on, e.g. 127.0.0.1:16443
                      (only 127.0.0.0/8 and [::1] are allowed)
  --token TOKEN       bearer token that every request must carry
  --namespace NS      namespace that exists at start; repeat for more (default: istio-system)
  --name NAME         cluster name for log lines (default: fake-kube)
  --log-requests      print one line per request to stderr
  --help              print this help";

#[derive(Debug, PartialEq)]
struct Options {
    listen: SocketAddr,
    token: String,
    namespaces: Vec<String>,
    name: String,
    log_requests: bool,
}

/// Runs `fake-kube` with `args`, the arguments after the subcommand (no program name), building
/// its own Tokio runtime. Call [`run_cli`] instead from code that already runs in a runtime.
pub fn cli_main(args: Vec<String>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the Tokio runtime")?;
    runtime.block_on(run_cli(args))
}

/// Runs `fake-kube` with `args` inside the current Tokio runtime until Ctrl-C.
pub async fn run_cli(args: Vec<String>) -> anyhow::Result<()> {
    let Some(options) = parse_args(&args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let mut config = FakeClusterConfig::new(options.name, options.token);
    config.namespaces = options.namespaces;
    config.listen = Some(options.listen);
    config.log_requests = options.log_requests;
    let namespaces = config.namespaces.join(", ");

    let cluster = FakeCluster::start(config).await?;
    println!(
        "fake-kube {}: serving {} (namespaces: {namespaces}); press Ctrl-C to stop",
        cluster.name(),
        cluster.url()
    );
    tokio::signal::ctrl_c()
        .await
        .context("failed to wait for Ctrl-C")?;
    eprintln!("fake-kube {}: stopping", cluster.name());
    cluster.shutdown().await;
    Ok(())
}

/// Parses the options, returning `None` for `--help`.
fn parse_args(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut listen = None;
    let mut token = None;
    let mut namespaces = Vec::new();
    let mut name = None;
    let mut log_requests = false;

    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |flag: &str| -> anyhow::Result<String> {
            match inline_value.clone().or_else(|| iter.next().cloned()) {
                Some(value) => Ok(value),
                None => bail!("{flag} needs a value\n\n{USAGE}"),
            }
        };
        match flag {
            "--help" | "-h" => return Ok(None),
            "--listen" => {
                let text = value(flag)?;
                let addr: SocketAddr = text.parse().with_context(|| {
                    format!("invalid --listen {text:?}: expected IP:PORT such as 127.0.0.1:16443")
                })?;
                check_loopback(addr)?;
                listen = Some(addr);
            }
            "--token" => token = Some(value(flag)?),
            "--namespace" => namespaces.push(value(flag)?),
            "--name" => name = Some(value(flag)?),
            "--log-requests" => log_requests = true,
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }

    let listen = listen.with_context(|| format!("missing --listen\n\n{USAGE}"))?;
    let token = token
        .filter(|t| !t.is_empty())
        .with_context(|| format!("missing --token\n\n{USAGE}"))?;
    if namespaces.is_empty() {
        namespaces.push("istio-system".to_owned());
    }
    Ok(Some(Options {
        listen,
        token,
        namespaces,
        name: name.unwrap_or_else(|| "fake-kube".to_owned()),
        log_requests,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cli_parses_options() {
        let parsed = parse_args(&args(&[
            "--listen",
            "127.0.0.1:16443",
            "--token",
            "t",
            "--namespace",
            "istio-system",
            "--namespace=other",
            "--name",
            "east",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(parsed.listen, "127.0.0.1:16443".parse().unwrap());
        assert_eq!(parsed.token, "t");
        assert_eq!(parsed.namespaces, vec!["istio-system", "other"]);
        assert_eq!(parsed.name, "east");
    }

    #[test]
    fn cli_rejects_non_loopback() {
        let error = parse_args(&args(&["--listen", "0.0.0.0:16443", "--token", "t"])).unwrap_err();
        assert!(
            error.to_string().contains("not a loopback address"),
            "{error}"
        );
        assert!(parse_args(&args(&["--listen", "[::1]:16443", "--token", "t"])).is_ok());
        assert!(parse_args(&args(&["--listen", "127.3.0.1:16443", "--token", "t"])).is_ok());
    }

    #[test]
    fn cli_requires_token() {
        let error = parse_args(&args(&["--listen", "127.0.0.1:16443"])).unwrap_err();
        assert!(error.to_string().contains("missing --token"), "{error}");
    }
}
