//! One step attempt as Dagger calls, and the engine's answers sorted into outcomes.
//!
//! The calls, in order (each `…{id}` is one request; IDs are resolved up front so that the SDK
//! never has to resolve one lazily, where it would `unwrap()` a failure into a panic):
//!
//! 1. `container{from(address: <image>){id}}`: resolving the image first makes a pull failure a
//!    clear step error naming the image, separate from anything the command does.
//! 2. `setSecret(name, plaintext){id}` per secret. Sent by hand rather than through
//!    `Selection::execute`, which traces whole documents and this one holds the plaintext.
//! 3. `cacheVolume(key){id}` per declared cache path.
//! 4. `host{directory(path: <host dir>, noCache: true){id}}` per dependency: its outputs, which the
//!    worker restored on the host. `noCache` because the session outlives runs: the engine must
//!    read the directory as it is now, not as it was the last time it saw that path.
//! 5. `host{file(path: <run inputs>, noCache: true){id}}`, when the run's inputs file exists.
//! 6. `directory{id}`: an empty directory that becomes `/out`.
//! 7. `node(id: <image>){... on Container{withWorkdir …{withEnvVariable …{withSecretVariable …
//!    {withDirectory("/in/<dep>") …{withFile("/in/_inputs.json") {withDirectory("/out",
//!    inheritOwner) …{withMountedCache …{withExec(args){sync}}}}}}}}}}`: runs the command. A
//!    non-zero exit comes back as an `EXEC_ERROR` (the default `expect: SUCCESS`), which is not
//!    cached by the engine, so a retry really runs again.
//! 8. `exitCode`, `stdout` and `stderr` of the synced container.
//! 9. On exit 0, `directory(path: "/out"){export(path: <host step_dir/out>)}`: the engine writes
//!    `/out` to the host, where the worker stores it as the step's artifact. A transport failure
//!    here is transient; a refusal (the engine cannot write there) is a step error naming it.
//!
//! Every attempt sets `TMS_RUN_ID` and `TMS_ATTEMPT`, so Dagger's exec cache never hands an old
//! run's result to a new run or attempt: whether a result may be reused is TMS's decision (the
//! step cache). Image layers, unchanged dependency directories and cache volumes still come from
//! the engine's cache.

use dagger_sdk::core::gql_client::GraphQlExtension;
use dagger_sdk::core::graphql_client::GraphQLError;
use dagger_sdk::errors::DaggerError;
use dagger_sdk::{Container, ContainerWithDirectoryOpts, HostDirectoryOpts, HostFileOpts, Id};

use super::engine::Session;
use crate::executor::StepRequest;

/// How an attempt failed to produce an outcome.
#[derive(Debug)]
pub enum Failure {
    /// The engine could not be asked or did not answer properly; the session may be gone.
    Transient(String),
    /// The engine answered that the step cannot run (missing image, refused input).
    Step(String),
}

/// What the command did.
#[derive(Debug)]
pub struct Finished {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The host side of one attempt, as the absolute UTF-8 paths the engine is given.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// `(dependency, directory holding its restored outputs)`, mounted at `/in/<dependency>`.
    pub inputs: Vec<(String, String)>,
    /// The run's inputs file, when it exists; mounted at [`INPUTS_FILE`].
    pub run_inputs: Option<String>,
    /// Where a successful step's `/out` is exported.
    pub out: String,
}

/// Where the run's inputs file appears in the container (`$TMS_INPUTS`).
pub const INPUTS_FILE: &str = "/in/_inputs.json";

/// An SDK error, sorted.
enum Classified {
    Transient(String),
    /// GraphQL errors other than an exec failure.
    Refused(String),
    Exec {
        exit_code: i32,
        stdout: String,
        stderr: String,
    },
}

fn classify(e: DaggerError) -> Classified {
    match e {
        DaggerError::Query(GraphQLError::HttpError(m)) => Classified::Transient(m),
        DaggerError::Query(GraphQLError::DomainError { fields, message }) => {
            let exec = fields.iter().find_map(|f| match &f.extensions {
                Some(GraphQlExtension::ExecError {
                    exit_code,
                    stdout,
                    stderr,
                    ..
                }) => Some(Classified::Exec {
                    exit_code: *exit_code,
                    stdout: stdout.clone(),
                    stderr: stderr.clone(),
                }),
                _ => None,
            });
            exec.unwrap_or_else(|| {
                let all: Vec<&str> = fields.iter().map(|f| f.message.as_str()).collect();
                Classified::Refused(if all.is_empty() {
                    message
                } else {
                    all.join("; ")
                })
            })
        }
        // The engine answered 200 with a shape the SDK cannot read: it is not in a state to be
        // trusted with this attempt, the way a garbled HTTP answer is not.
        DaggerError::Unpack(e) => Classified::Transient(format!(
            "the engine answered with an unexpected shape: {}",
            chain(&e)
        )),
        other => Classified::Refused(chain(&other)),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

/// For calls whose failure means the step cannot run: `what` says which input it was.
fn refused(what: impl std::fmt::Display) -> impl Fn(DaggerError) -> Failure {
    move |e| match classify(e) {
        Classified::Transient(m) => Failure::Transient(m),
        Classified::Refused(m) => Failure::Step(format!("{what}: {m}")),
        Classified::Exec { exit_code, .. } => Failure::Step(format!(
            "{what}: a command failed with exit code {exit_code}"
        )),
    }
}

/// For calls after the command ran: the engine has just answered for this container, so a
/// failure now is the engine's, not the step's.
fn after_exec(e: DaggerError) -> Failure {
    match classify(e) {
        Classified::Transient(m) => Failure::Transient(m),
        Classified::Refused(m) => Failure::Transient(format!("reading the step's results: {m}")),
        Classified::Exec { exit_code, .. } => Failure::Transient(format!(
            "reading the step's results: exec error {exit_code}"
        )),
    }
}

/// The cache volume key of `path` for `scope` (the workflow): one volume per workflow and path,
/// so two paths never share content and two workflows never see each other's caches.
pub fn cache_volume_key(scope: &str, path: &str) -> String {
    format!("tms:{scope}:{path}")
}

async fn set_secret(s: &Session, name: &str, plaintext: &str) -> Result<Id, Failure> {
    let doc = s
        .query
        .set_secret(name, plaintext)
        .selection
        .select("id")
        .build()
        .await
        .map_err(|e| Failure::Step(format!("secret `{name}`: {}", chain(&e))))?;
    let data = s.client.post(&doc).await.map_err(|e| {
        refused(format!("the engine refused secret `{name}`"))(DaggerError::Query(e.into()))
    })?;
    data.get("setSecret")
        .and_then(|v| v.get("id"))
        .and_then(|v| v.as_str())
        .map(|id| Id(id.to_string()))
        .ok_or_else(|| Failure::Transient("the engine answered setSecret without an id".into()))
}

/// Runs one attempt: `host` says where its inputs are and where `/out` goes, `caches` are the
/// cache mounts as (path, volume key).
pub async fn run(
    s: &Session,
    req: &StepRequest,
    host: &HostPaths,
    caches: &[(String, String)],
) -> Result<Finished, Failure> {
    let q = &s.query;
    let image = req.step.image.as_str();
    let base = q
        .container()
        .from(image)
        .id()
        .await
        .map_err(refused(format!("cannot pull image `{image}`")))?;

    let mut secrets = Vec::with_capacity(req.secrets.len());
    for (name, value) in &req.secrets {
        secrets.push((name.clone(), set_secret(s, name, value).await?));
    }
    let mut volumes = Vec::with_capacity(caches.len());
    for (path, key) in caches {
        let id = q
            .cache_volume(key.as_str())
            .id()
            .await
            .map_err(refused(format!("cache volume for `{path}`")))?;
        volumes.push((path.clone(), id));
    }
    let mut deps = Vec::with_capacity(host.inputs.len());
    for (dep, path) in &host.inputs {
        let opts = HostDirectoryOpts {
            exclude: None,
            gitignore: None,
            include: None,
            no_cache: Some(true),
        };
        let id = q
            .host()
            .directory_opts(path.as_str(), opts)
            .id()
            .await
            .map_err(refused(format!(
                "the engine cannot read the output of step `{dep}` from {path}"
            )))?;
        deps.push((dep.clone(), id));
    }
    let run_inputs = match &host.run_inputs {
        Some(path) => Some(
            q.host()
                .file_opts(
                    path.as_str(),
                    HostFileOpts {
                        no_cache: Some(true),
                    },
                )
                .id()
                .await
                .map_err(refused(format!(
                    "the engine cannot read the run's inputs from {path}"
                )))?,
        ),
        None => None,
    };
    let empty = q.directory().id().await.map_err(refused("creating /out"))?;

    let mut c: Container = q.r#ref(base);
    if let Some(dir) = &req.step.workdir {
        c = c.with_workdir(dir.as_str());
    }
    for (k, v) in &req.step.env {
        c = c.with_env_variable(k.as_str(), v.as_str());
    }
    // After the step's own variables, so they win; the order of the local executor.
    for (k, v) in [
        ("TMS_OUT", "/out"),
        ("TMS_IN", "/in"),
        ("TMS_INPUTS", INPUTS_FILE),
    ] {
        c = c.with_env_variable(k, v);
    }
    for (k, v) in &req.input_vars {
        c = c.with_env_variable(k.as_str(), v.as_str());
    }
    for (k, v) in [
        ("TMS_RUN_ID", req.run_id.to_string()),
        ("TMS_STEP", req.step.name.clone()),
        ("TMS_ATTEMPT", req.attempt.to_string()),
    ] {
        c = c.with_env_variable(k, v);
    }
    for (name, id) in secrets {
        c = c.with_secret_variable(name, id);
    }
    for (dep, id) in deps {
        c = c.with_directory(format!("/in/{dep}"), id);
    }
    if let Some(id) = run_inputs {
        c = c.with_file(INPUTS_FILE, id);
    }
    // Owned by the image's user, so a non-root image can write its outputs.
    c = c.with_directory_opts(
        "/out",
        empty,
        ContainerWithDirectoryOpts {
            exclude: None,
            expand: None,
            gitignore: None,
            include: None,
            inherit_owner: Some(true),
            owner: None,
            permissions: None,
        },
    );
    for (path, id) in volumes {
        c = c.with_mounted_cache(path, id);
    }
    let argv = req.step.argv();
    if argv.is_empty() {
        return Err(Failure::Step("step has nothing to execute".into()));
    }
    let done = match c.with_exec(argv).sync().await {
        Ok(done) => done,
        Err(e) => {
            return match classify(e) {
                Classified::Transient(m) => Err(Failure::Transient(m)),
                Classified::Exec {
                    exit_code,
                    stdout,
                    stderr,
                } => Ok(Finished {
                    exit_code,
                    stdout,
                    stderr,
                }),
                Classified::Refused(m) => Err(Failure::Step(format!(
                    "the engine could not run the step in image `{image}`: {m}"
                ))),
            };
        }
    };
    let exit_code = done.exit_code().await.map_err(after_exec)?;
    let stdout = done.stdout().await.map_err(after_exec)?;
    let stderr = done.stderr().await.map_err(after_exec)?;
    let exit_code = i32::try_from(exit_code).unwrap_or(-1);
    if exit_code == 0 {
        done.directory("/out")
            .export(host.out.as_str())
            .await
            .map_err(refused(format!(
                "the engine could not export the step's /out to {}",
                host.out
            )))?;
    }
    Ok(Finished {
        exit_code,
        stdout,
        stderr,
    })
}
