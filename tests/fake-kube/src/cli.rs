//! The `fake-kube` command: one fake cluster, over HTTP or HTTPS, in the foreground until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context as _};

use crate::{check_loopback, ClientCa, FakeCluster, FakeClusterConfig};

const USAGE: &str = "\
Usage: fake-kube --listen ADDR --token TOKEN [--namespace NS]... [--name NAME] [--log-requests]
                 [--https] [--write-ca FILE] [--client-ca FILE | --write-client-cert DIR]
                 [--pod NS/NAME:LABEL=VALUE[,LABEL=VALUE]]...

Serves one fake Kubernetes API cluster until Ctrl-C, over plain HTTP unless --https is given.

Options:
  --listen ADDR              loopback address and port to listen on, e.g. 127.0.0.1:16443
                             (only 127.0.0.0/8 and [::1] are allowed)
  --token TOKEN              bearer token that every request must carry
  --namespace NS             namespace that exists at start; repeat for more (default: istio-system)
  --name NAME                cluster name for log lines (default: fake-kube)
  --log-requests             print one line per request, and each failed TLS handshake, to stderr
  --https                    serve HTTPS with a CA made at start; the server certificate is valid
                             for localhost, 127.0.0.1, ::1 and the --listen address
  --write-ca FILE            write that CA's certificate (PEM) to FILE, for Spin's ca_roots_file
                             or curl --cacert (needs --https)
  --client-ca FILE           require client certificates signed by the CA in PEM FILE
                             (implies --https)
  --write-client-cert DIR    make a client CA, require client certificates signed by it, and write
                             client.crt and client.key into DIR (implies --https)
  --pod NS/NAME:LABELS        a running pod with these labels, such as
                             istio-system/ingress-1:istio=ingressgateway, so that Gateway
                             selectors find a workload; repeat for more
  --help                     print this help";

#[derive(Debug, PartialEq)]
struct Options {
    listen: SocketAddr,
    token: String,
    namespaces: Vec<String>,
    name: String,
    log_requests: bool,
    https: bool,
    write_ca: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    write_client_cert: Option<PathBuf>,
    pods: Vec<Pod>,
}

/// A pod of `--pod`.
#[derive(Debug, PartialEq)]
struct Pod {
    namespace: String,
    name: String,
    labels: Vec<(String, String)>,
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
    if options.https {
        config = config.https();
    }
    if let Some(path) = &options.client_ca {
        let pem = std::fs::read_to_string(path).with_context(|| {
            format!(
                "failed to read --client-ca {}: check the path",
                path.display()
            )
        })?;
        config = config.require_client_certificate(ClientCa::Pem(pem));
    }
    if options.write_client_cert.is_some() {
        config = config.require_client_certificate(ClientCa::Generate);
    }
    let namespaces = config.namespaces.join(", ");

    let cluster = FakeCluster::start(config).await?;
    for pod in &options.pods {
        let labels: Vec<(&str, &str)> = pod.labels.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
        cluster.put_pod(&pod.namespace, &pod.name, &labels)?;
    }
    if let Some(path) = &options.write_ca {
        // parse_args accepts --write-ca only with HTTPS, and an HTTPS cluster always has a CA.
        let ca_pem = cluster
            .ca_pem()
            .context("the cluster serves plain HTTP, so it has no CA to write")?;
        std::fs::write(path, ca_pem)
            .with_context(|| format!("failed to write the CA to --write-ca {}", path.display()))?;
        println!(
            "fake-kube {}: wrote the server CA to {}",
            cluster.name(),
            path.display()
        );
    }
    if let Some(dir) = &options.write_client_cert {
        let client = cluster.issue_client_certificate("meshcert")?;
        let (certificate_path, key_path) = (dir.join("client.crt"), dir.join("client.key"));
        std::fs::write(&certificate_path, &client.certificate_pem).with_context(|| {
            format!(
                "failed to write {}: check that --write-client-cert names a directory",
                certificate_path.display()
            )
        })?;
        std::fs::write(&key_path, &client.private_key_pem).with_context(|| {
            format!(
                "failed to write {}: check that --write-client-cert names a directory",
                key_path.display()
            )
        })?;
        println!(
            "fake-kube {}: wrote a client certificate to {} and its key to {}",
            cluster.name(),
            certificate_path.display(),
            key_path.display()
        );
    }
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
    let mut https = false;
    let mut write_ca = None;
    let mut client_ca = None;
    let mut write_client_cert = None;
    let mut pods = Vec::new();

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
            "--pod" => pods.push(parse_pod(&value(flag)?)?),
            "--https" => https = true,
            "--write-ca" => write_ca = Some(PathBuf::from(value(flag)?)),
            "--client-ca" => client_ca = Some(PathBuf::from(value(flag)?)),
            "--write-client-cert" => write_client_cert = Some(PathBuf::from(value(flag)?)),
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
    if client_ca.is_some() && write_client_cert.is_some() {
        bail!("--client-ca and --write-client-cert both set the client CA: give one of them\n\n{USAGE}");
    }
    let https = https || client_ca.is_some() || write_client_cert.is_some();
    if write_ca.is_some() && !https {
        bail!("--write-ca needs --https: a plain HTTP cluster has no CA\n\n{USAGE}");
    }
    Ok(Some(Options {
        listen,
        token,
        namespaces,
        name: name.unwrap_or_else(|| "fake-kube".to_owned()),
        log_requests,
        https,
        write_ca,
        client_ca,
        write_client_cert,
        pods,
    }))
}

/// Parses `--pod namespace/name:key=value,key=value`.
fn parse_pod(text: &str) -> anyhow::Result<Pod> {
    let invalid = || format!("--pod {text:?} is not NS/NAME:LABEL=VALUE[,LABEL=VALUE], such as istio-system/ingress-1:istio=ingressgateway\n\n{USAGE}");
    let (pod, labels) = text.split_once(':').with_context(invalid)?;
    let (namespace, name) = pod.split_once('/').with_context(invalid)?;
    let labels = labels
        .split(',')
        .map(|label| label.split_once('=').map(|(key, value)| (key.to_owned(), value.to_owned())))
        .collect::<Option<Vec<_>>>()
        .with_context(invalid)?;
    Ok(Pod { namespace: namespace.to_owned(), name: name.to_owned(), labels })
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
    fn cli_parses_pods() {
        let base = ["--listen", "127.0.0.1:16443", "--token", "t"];
        let with_pod = |pod: &str| {
            let mut list = base.to_vec();
            list.extend(["--pod", pod]);
            parse_args(&args(&list))
        };

        let parsed = with_pod("gateways/ingress-1:istio=ingressgateway,app=edge").unwrap().unwrap();

        assert_eq!(
            parsed.pods,
            vec![Pod {
                namespace: "gateways".to_owned(),
                name: "ingress-1".to_owned(),
                labels: vec![("istio".to_owned(), "ingressgateway".to_owned()), ("app".to_owned(), "edge".to_owned())],
            }]
        );
        for invalid in ["ingress-1:istio=ingressgateway", "gateways/ingress-1", "gateways/ingress-1:istio"] {
            let error = with_pod(invalid).unwrap_err();
            assert!(error.to_string().contains("is not NS/NAME:LABEL=VALUE"), "{invalid}: {error}");
        }
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
    fn cli_parses_https_options() {
        let parsed = parse_args(&args(&[
            "--listen",
            "127.0.0.1:16443",
            "--token",
            "t",
            "--https",
            "--write-ca=ca.pem",
        ]))
        .unwrap()
        .unwrap();
        assert!(parsed.https);
        assert_eq!(parsed.write_ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(parsed.client_ca, None);

        let parsed = parse_args(&args(&[
            "--listen",
            "127.0.0.1:16443",
            "--token",
            "t",
            "--write-client-cert",
            "out",
        ]))
        .unwrap()
        .unwrap();
        assert!(parsed.https, "--write-client-cert implies --https");
        assert_eq!(parsed.write_client_cert, Some(PathBuf::from("out")));
    }

    #[test]
    fn cli_write_ca_needs_https() {
        let error = parse_args(&args(&[
            "--listen",
            "127.0.0.1:16443",
            "--token",
            "t",
            "--write-ca",
            "ca.pem",
        ]))
        .unwrap_err();
        assert!(
            error.to_string().contains("--write-ca needs --https"),
            "{error}"
        );
    }

    #[test]
    fn cli_rejects_two_client_cas() {
        let error = parse_args(&args(&[
            "--listen",
            "127.0.0.1:16443",
            "--token",
            "t",
            "--client-ca",
            "ca.pem",
            "--write-client-cert",
            "out",
        ]))
        .unwrap_err();
        assert!(error.to_string().contains("give one of them"), "{error}");
    }

    #[test]
    fn cli_requires_token() {
        let error = parse_args(&args(&["--listen", "127.0.0.1:16443"])).unwrap_err();
        assert!(error.to_string().contains("missing --token"), "{error}");
    }
}
