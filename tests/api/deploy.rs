//! `scripts/deploy.sh`, the operator's path from a commit to a running deployment, checked the
//! way it can be here (no Google Cloud): its dry run prints the whole sequence, in order, with the
//! commit as the image tag, names only Terraform resources and outputs that exist, pushes exactly
//! the services Terraform deploys, keeps the root key off every command line, and runs nothing.
//! And every shell script of the project is `shellcheck` clean.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::terraform_text::{repo, resource, services, terraform_files};

/// The tools the deploy runs; in the test each is a stand-in on `PATH` that records its call.
const DEPLOY_TOOLS: &[&str] = &["terraform", "gcloud", "buildah", "curl", "make", "openssl"];

/// Stand-ins for [`DEPLOY_TOOLS`] in a directory put first on `PATH`: each appends its name and
/// arguments to `calls.log`, so a dry run that runs anything is caught.
fn recording_tools(dir: &Path) -> PathBuf {
    let log = dir.join("calls.log");
    for tool in DEPLOY_TOOLS {
        let path = dir.join(tool);
        std::fs::write(&path, format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\n", log.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    log
}

fn deploy(args: &[&str], env: &[(&str, &str)], tools: &Path) -> Output {
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(repo().join("scripts/deploy.sh"));
    command.args(args).env("PATH", path).env_remove("STATE_BUCKET").env_remove("IMAGE_TAG").env_remove("DRY_RUN");
    command.envs(env.iter().copied()).output().expect("run scripts/deploy.sh")
}

fn head_commit() -> String {
    let out = Command::new("git").arg("-C").arg(repo()).args(["rev-parse", "--short=12", "HEAD"]).output().unwrap();
    assert!(out.status.success(), "git rev-parse: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The index of the first printed command, at or after `from`, containing every part; panics
/// with the whole printout otherwise (so the order of steps is checked too).
fn find_step(lines: &[&str], from: usize, parts: &[&str], printed: &str) -> usize {
    lines
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, line)| line.starts_with("+ ") && parts.iter().all(|p| line.contains(p)))
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("no command with {parts:?} after line {from} of the dry run:\n{printed}"))
}

#[test]
fn the_deploy_dry_run_prints_build_push_apply_and_bootstrap_in_order_and_runs_nothing() {
    let tools = tempfile::tempdir().unwrap();
    let calls = recording_tools(tools.path());
    let tfvars = repo().join("terraform/environments/production.tfvars").canonicalize().unwrap();
    let out =
        deploy(&[tfvars.to_str().unwrap()], &[("DRY_RUN", "1"), ("STATE_BUCKET", "acme-prod-tfstate")], tools.path());
    let printed = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the dry run failed ({}):\n{printed}", out.status);
    assert!(!calls.exists(), "a dry run ran commands:\n{}", std::fs::read_to_string(&calls).unwrap_or_default());

    let tag = head_commit();
    let lines: Vec<&str> = printed.lines().collect();
    let tfvars_arg = format!("-var-file={}", tfvars.display());
    let tag_arg = format!("image_tag={tag}");
    let mut at = find_step(&lines, 0, &["terraform", "init", "bucket=acme-prod-tfstate"], &printed);
    at = find_step(
        &lines,
        at,
        &["terraform", " apply", &tfvars_arg, &tag_arg, "-target=google_artifact_registry_repository.images"],
        &printed,
    );
    at = find_step(&lines, at, &["gcloud secrets versions list"], &printed);
    at = find_step(&lines, at, &["make", "images", &format!("IMAGE_TAG={tag}")], &printed);
    at = find_step(&lines, at, &["gcloud auth print-access-token", "buildah", "login"], &printed);
    let files = terraform_files();
    let login = at;
    for service in services(&files).keys() {
        let push = format!("convergence-{service}:{tag} docker://<image_repository>/convergence-{service}:{tag}");
        at = at.max(find_step(&lines, login, &["buildah", "push", &push], &printed));
    }
    let pushes = lines.iter().filter(|l| l.starts_with("+ ") && l.contains(" push ")).count();
    assert_eq!(pushes, services(&files).len(), "one push per Cloud Run service:\n{printed}");
    let full_apply = find_step(&lines, at, &["terraform", " apply", &tfvars_arg, &tag_arg], &printed);
    assert!(!lines[full_apply].contains("-target"), "the last apply is the whole configuration: {}", lines[full_apply]);
    let bootstrap = find_step(&lines, full_apply, &["curl", "/api/v1/admin/bootstrap"], &printed);
    assert!(
        lines[bootstrap].contains("gcloud secrets versions access") && lines[bootstrap].contains("-H @-"),
        "the root key goes from Secret Manager to curl's standard input, never on a command line: {}",
        lines[bootstrap]
    );

    // What the script names in terraform/ exists there.
    for (kind, name) in
        [("google_artifact_registry_repository", "images"), ("google_secret_manager_secret", "root_api_key")]
    {
        assert!(printed.contains(&format!("-target={kind}.{name}")), "{kind}.{name} targeted");
        resource(&files, kind, name);
    }
    let outputs: String = files.iter().map(|f| f.text.as_str()).collect();
    for output in ["api_url", "root_api_key_secret", "image_repository", "lb_ip_address"] {
        assert!(outputs.contains(&format!("output \"{output}\"")), "scripts/deploy.sh reads the output {output}");
    }
}

#[test]
fn the_deploy_refuses_missing_inputs_with_what_to_do() {
    let tools = tempfile::tempdir().unwrap();
    let calls = recording_tools(tools.path());
    let tfvars = repo().join("terraform/environments/staging.tfvars");
    /// Arguments, environment, and what the refusal must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        (&[], &[("STATE_BUCKET", "b")], "usage:"),
        (&["terraform/environments/nope.tfvars"], &[("STATE_BUCKET", "b")], "does not exist"),
        (&[tfvars.to_str().unwrap()], &[], "set STATE_BUCKET"),
    ];
    for (args, env, says) in cases {
        let out = deploy(args, env, tools.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?} {env:?} should say {says:?}: {stderr}");
    }
    assert!(!calls.exists(), "a refused deploy ran commands");
}

#[test]
fn every_shell_script_is_shellcheck_clean() {
    let install =
        Command::new(repo().join("scripts/debian-tool.sh")).args(["shellcheck", "shellcheck"]).output().unwrap();
    assert!(
        install.status.success(),
        "shellcheck is not installed and could not be (apt-get install shellcheck): {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let shellcheck = String::from_utf8(install.stdout).unwrap().trim().to_string();
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(repo().join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.push(repo().join(".ci/run"));
    scripts.sort();
    assert!(scripts.len() >= 5, "{scripts:?}");
    let out = Command::new(&shellcheck).args(&scripts).output().unwrap();
    assert!(
        out.status.success(),
        "shellcheck found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_readme_deploy_section_names_what_terraform_and_the_script_use() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme.split("\n## Deploy\n").nth(1).expect("a Deploy section").split("\n## ").next().unwrap();
    let files = terraform_files();
    let secret = resource(&files, "google_secret_manager_secret", "root_api_key");
    let body = &secret.0.text[secret.1..secret.0.closing(secret.1)];
    assert!(body.contains("secret_id = \"${local.name}-root-api-key\""), "{body}");
    let name = crate::terraform_text::local_literal(&files, "name");
    for needed in [
        format!("gcloud secrets versions add {name}-root-api-key"),
        "STATE_BUCKET=".into(),
        "make deploy TFVARS=".into(),
        "scripts/deploy.sh terraform/prod.tfvars bootstrap".into(),
        "output -raw lb_ip_address".into(),
        "cp terraform/environments/production.tfvars terraform/prod.tfvars".into(),
    ] {
        assert!(section.contains(&needed), "README \"Deploy\" should contain {needed:?}");
    }
}
