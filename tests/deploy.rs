//! Offline checks of the deployment files (issue 11, scope 8): this machine
//! cannot pull images or run a cluster, so the Dockerfile, docker-compose.yml
//! and deploy/k8s/*.yaml are read and checked against the code:
//!
//! - every command they run parses as the binary's CLI;
//! - probes point at the server's probe routes, on the port it listens on;
//! - every environment variable they set is read by the code and listed in
//!   `.env.example`;
//! - the image runs as the non-root user the manifests expect, with the
//!   binary, `target/site` and `Leptos.toml`;
//! - the drain fits in the grace period.
#![cfg(feature = "ssr")]

use clap::Parser;
use rsolv_platform::server::cli::Cli;
use rsolv_platform::server::http::health::{LIVENESS_PATH, READINESS_PATH};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every YAML document of `path`, as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(value).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
        .iter()
        .flat_map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            yaml_documents(p)
                .into_iter()
                .map(move |d| (name.clone(), d))
        })
        .collect()
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Parses `args` as the binary's command line.
fn assert_cli_accepts(args: &[String], origin: &str) {
    let mut argv = vec!["rsolv-platform".to_owned()];
    argv.extend(args.iter().cloned());
    if let Err(e) = Cli::try_parse_from(&argv) {
        panic!(
            "{origin}: `{}` is not a command of the binary: {e}",
            argv.join(" ")
        );
    }
}

/// Pod specs with where they come from.
fn pod_specs(docs: &[(String, Value)]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter_map(|(file, d)| {
            let spec = &d["spec"]["template"]["spec"];
            spec.is_object()
                .then(|| (format!("{file} {}", d["metadata"]["name"]), spec))
        })
        .collect()
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

/// The names `#NAME=` / `NAME=` of `.env.example`.
fn documented_variables() -> Vec<String> {
    read(".env.example")
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches('#');
            let (name, _) = l.split_once('=')?;
            (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .then(|| name.to_owned())
        })
        .collect()
}

/// All Rust source under src/, to find where a variable is read.
fn sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = String::new();
    walk(&root().join("src"), &mut out);
    out
}

/// Variables read by Leptos itself or the logging filter, not by our code.
const EXTERNAL: &[&str] = &["RUST_LOG", "LEPTOS_SITE_ADDR"];

fn assert_known_variable(name: &str, origin: &str, documented: &[String], sources: &str) {
    assert!(
        documented.iter().any(|d| d == name),
        "{origin}: {name} is not documented in .env.example"
    );
    assert!(
        EXTERNAL.contains(&name) || sources.contains(&format!("\"{name}\"")),
        "{origin}: {name} is not read anywhere in src/"
    );
}

/// The port of a `host:port` address.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The final stage of the Dockerfile: (instruction, rest) pairs.
fn final_stage() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    let mut stage = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        let instruction = instruction.to_ascii_uppercase();
        if instruction == "FROM" {
            stage.clear();
        }
        stage.push((instruction, rest.trim().to_owned()));
    }
    stage
}

fn instruction<'a>(stage: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|(i, _)| i == name)
        .map(|(_, r)| r.as_str())
        .collect()
}

#[test]
fn the_image_runs_the_binary_as_a_non_root_user_with_the_site() {
    let stage = final_stage();
    let user = instruction(&stage, "USER");
    assert_eq!(user, ["10001:10001"], "the image runs as uid 10001");
    let copies = instruction(&stage, "COPY").join("\n");
    for needed in [
        "target/release/rsolv-platform /usr/local/bin/rsolv-platform",
        "target/site /app/target/site",
        "Leptos.toml /app/Leptos.toml",
    ] {
        assert!(copies.contains(needed), "the image lacks {needed}");
    }
    let entrypoint: Vec<String> =
        serde_json::from_str(instruction(&stage, "ENTRYPOINT")[0]).unwrap();
    assert_eq!(entrypoint, ["/usr/local/bin/rsolv-platform"]);
    let cmd: Vec<String> = serde_json::from_str(instruction(&stage, "CMD")[0]).unwrap();
    assert_cli_accepts(&cmd, "Dockerfile CMD");
    // The ENV line's listen address, the exposed port and Leptos.toml's
    // site root agree.
    let env = instruction(&stage, "ENV").join(" ");
    let addr = env
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("LEPTOS_SITE_ADDR="))
        .expect("LEPTOS_SITE_ADDR in ENV");
    assert_eq!(instruction(&stage, "EXPOSE"), [port_of(addr).to_string()]);
    assert!(read("Leptos.toml").contains("site-root = \"target/site\""));
    let documented = documented_variables();
    let sources = sources();
    for kv in env.split_whitespace() {
        let name = kv.split('=').next().unwrap();
        assert_known_variable(name, "Dockerfile ENV", &documented, &sources);
    }
}

#[test]
fn kubernetes_manifests_match_the_server() {
    let docs = manifests();
    let documented = documented_variables();
    let sources = sources();
    let config = of_kind(&docs, "ConfigMap");
    let config = config
        .iter()
        .find(|c| c["metadata"]["name"] == "rsolv-platform")
        .expect("the rsolv-platform ConfigMap");
    let secret = of_kind(&docs, "Secret");
    assert_eq!(secret.len(), 1, "secret.example.yaml");
    for (origin, map) in [
        ("ConfigMap", &config["data"]),
        ("Secret", &secret[0]["stringData"]),
    ] {
        for name in map.as_object().unwrap().keys() {
            assert_known_variable(name, origin, &documented, &sources);
        }
    }

    let shutdown: u64 = config["data"]["SHUTDOWN_TIMEOUT_SECONDS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let image_user = 10001;
    for (origin, spec) in pod_specs(&docs) {
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{origin}");
        assert_eq!(spec["securityContext"]["runAsUser"], image_user, "{origin}");
        if let Some(grace) = spec["terminationGracePeriodSeconds"].as_u64() {
            assert!(
                grace > shutdown,
                "{origin}: grace {grace} <= drain {shutdown}"
            );
        }
        let mounts: Vec<&Value> = spec["volumes"].as_array().into_iter().flatten().collect();
        for container in containers(spec) {
            let origin = format!("{origin} container {}", container["name"]);
            assert_cli_accepts(&strings(&container["args"]), &origin);
            for var in container["env"].as_array().into_iter().flatten() {
                assert_known_variable(
                    var["name"].as_str().unwrap(),
                    &origin,
                    &documented,
                    &sources,
                );
            }
            for from in container["envFrom"].as_array().into_iter().flatten() {
                let name = from["configMapRef"]["name"]
                    .as_str()
                    .or(from["secretRef"]["name"].as_str())
                    .unwrap();
                assert_eq!(name, "rsolv-platform", "{origin}: envFrom {name}");
            }
            for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                assert!(
                    mounts.iter().any(|v| v["name"] == mount["name"]),
                    "{origin}: mount of an undeclared volume {}",
                    mount["name"]
                );
            }
            // A container that listens: its port is the listen address's,
            // its probes hit the server's probe routes on that port.
            let Some(ports) = container["ports"].as_array() else {
                continue;
            };
            let addr = container["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == "LEPTOS_SITE_ADDR")
                .and_then(|v| v["value"].as_str())
                .expect("a listening container sets LEPTOS_SITE_ADDR");
            assert!(addr.starts_with("0.0.0.0:"), "{origin}: listens on {addr}");
            let port = &ports[0];
            assert_eq!(port["containerPort"], port_of(addr), "{origin}");
            let probe = |kind: &str| &container[kind]["httpGet"];
            assert_eq!(probe("livenessProbe")["path"], LIVENESS_PATH, "{origin}");
            assert_eq!(probe("readinessProbe")["path"], READINESS_PATH, "{origin}");
            for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
                if container[kind].is_object() {
                    assert_eq!(probe(kind)["port"], port["name"], "{origin} {kind}");
                }
            }
        }
    }

    // The app: two replicas, a Service on its named port, a PDB over it.
    let app = of_kind(&docs, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "app")
        .expect("app Deployment");
    assert_eq!(app["spec"]["replicas"], 2);
    let app_labels = &app["spec"]["template"]["metadata"]["labels"];
    let service = of_kind(&docs, "Service")[0];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&app_labels[k], v, "Service selector {k}");
    }
    let app_container = &app["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"],
        app_container["ports"][0]["name"]
    );
    let pdb = of_kind(&docs, "PodDisruptionBudget")[0];
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&app_labels[k], v, "PDB selector {k}");
    }
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap() < 2);
    // The worker and the migration Job exist and run what they should.
    let worker = of_kind(&docs, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker")
        .expect("worker Deployment");
    assert_eq!(
        strings(&worker["spec"]["template"]["spec"]["containers"][0]["args"]),
        ["worker"]
    );
    let job = of_kind(&docs, "Job")[0];
    assert_eq!(
        strings(&job["spec"]["template"]["spec"]["initContainers"][0]["args"]),
        ["migrate"]
    );
}

#[test]
fn docker_compose_runs_commands_the_binary_has_with_known_settings() {
    let docs = yaml_documents(&root().join("docker-compose.yml"));
    let compose = &docs[0];
    let documented = documented_variables();
    let sources = sources();
    let services = compose["services"].as_object().unwrap();
    for name in [
        "postgres",
        "app",
        "worker",
        "smtp",
        "localstripe",
        "migrate",
    ] {
        assert!(services.contains_key(name), "compose service {name}");
    }
    for name in ["app", "worker", "migrate"] {
        let service = &services[name];
        assert_cli_accepts(&strings(&service["command"]), &format!("compose {name}"));
        for var in service["environment"].as_object().unwrap().keys() {
            assert_known_variable(var, &format!("compose {name}"), &documented, &sources);
        }
    }
    // The app's published port is the image's listen port.
    let published = services["app"]["ports"][0].as_str().unwrap();
    let stage = final_stage();
    let exposed = instruction(&stage, "EXPOSE")[0];
    assert!(published.ends_with(&format!(":{exposed}")), "{published}");
}
