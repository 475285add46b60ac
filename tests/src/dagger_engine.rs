//! A loopback stand-in for a Dagger engine session, for contract tests of the Dagger executor.
//!
//! It speaks the engine's session protocol as the Rust SDK uses it: `POST /query` with
//! `Authorization: Basic base64("<token>:")` and a JSON body `{"query": "...", "variables": null}`,
//! answered with `{"data": ...}` or `{"errors": [...]}`. Requests with a wrong or missing token get
//! a 401 and are counted, not evaluated.
//!
//! Every document is recorded twice: as received, and in a canonical form with each field's
//! arguments sorted by name. The SDK keeps arguments in a `HashMap`, so their order changes from
//! one request to the next; the canonical form is what tests compare against.
//!
//! Documents are *evaluated*, not pattern-matched: the engine keeps the objects the client built
//! (containers, directories, secrets, cache volumes) under IDs it hands out (`ctr:1`, `dir:2`, …,
//! numbered in creation order), so a directory ID a step's `/out` produced really carries that
//! step's files to its dependents. Running a command is delegated to a handler the test installs
//! (there is no container runtime): it sees the image, workdir, environment, secret values,
//! mounted directories and argv, and returns an exit code, stdout, stderr and the files left in
//! `/out`. A non-zero exit is answered as the real engine does, with an `EXEC_ERROR` extension.
//!
//! The host side is real (see [`host`]): `host{directory}` and `host{file}` read the machine's
//! files, and `Directory.export` writes them, so a step's `/out` really lands on the host and a
//! dependent really reads what is there.
//!
//! Faults can be queued for the next document containing a pattern: an HTTP 500, a dropped
//! connection, or `{"data": null}`.

mod document;
mod host;

pub use document::{ArgValue, Sel, canonical, canonicalize, parse_document};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Files of a directory: relative path → content.
pub type Files = BTreeMap<String, String>;

/// What a command sees when the engine runs it.
#[derive(Debug, Clone)]
pub struct ExecInput {
    pub image: String,
    pub workdir: Option<String>,
    /// Plain environment variables, in the order they were set.
    pub env: Vec<(String, String)>,
    /// Secret environment variables: name → plaintext (resolved from the secret IDs).
    pub secrets: BTreeMap<String, String>,
    /// Directories written into the container: absolute path → files.
    pub dirs: BTreeMap<String, Files>,
    /// Single files written into the container (`withFile`): absolute path → content.
    pub files: BTreeMap<String, String>,
    /// Cache volumes: mount path → cache key.
    pub caches: BTreeMap<String, String>,
    pub args: Vec<String>,
}

impl ExecInput {
    /// The value of a plain environment variable (the last one set wins, as in a container).
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a command produced.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// Files the command left in `/out`.
    pub out: Files,
}

impl ExecOutput {
    pub fn ok(stdout: impl Into<String>) -> Self {
        Self {
            stdout: stdout.into(),
            ..Default::default()
        }
    }
}

pub type ExecHandler = Arc<dyn Fn(&ExecInput) -> ExecOutput + Send + Sync>;

/// A failure injected instead of the engine's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `HTTP/1.1 500` with a plain-text body.
    Http500,
    /// The connection is closed after reading the request, without any answer.
    Drop,
    /// `200 {"data": null}` without `errors` (what makes `Selection::execute` panic).
    DataNull,
}

/// How an `EXEC_ERROR` carries the command's output: engines have sent `stdout`/`stderr`, and
/// newer ones a single `combinedOutput`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecErrorStyle {
    StdoutStderr,
    CombinedOutput,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub raw: String,
    pub canonical: String,
}

#[derive(Clone)]
enum Obj {
    Query,
    Container(Box<Ctr>),
    Directory(Files),
    Secret { plaintext: String },
    Cache { key: String },
    Host,
    File(String),
}

impl Obj {
    fn type_name(&self) -> &'static str {
        match self {
            Obj::Query => "Query",
            Obj::Container(_) => "Container",
            Obj::Directory(_) => "Directory",
            Obj::Secret { .. } => "Secret",
            Obj::Cache { .. } => "CacheVolume",
            Obj::Host => "Host",
            Obj::File(_) => "File",
        }
    }
}

#[derive(Clone, Default)]
struct Ctr {
    image: String,
    workdir: Option<String>,
    env: Vec<(String, String)>,
    /// (variable name, secret ID)
    secret_env: Vec<(String, String)>,
    dirs: BTreeMap<String, Files>,
    files: BTreeMap<String, String>,
    caches: BTreeMap<String, String>,
    pending_exec: Option<Vec<String>>,
    result: Option<ExecOutput>,
}

struct State {
    token: String,
    received: Vec<Received>,
    rejected: usize,
    faults: VecDeque<(String, Fault)>,
    missing_images: Vec<String>,
    handler: Option<ExecHandler>,
    exec_error_style: ExecErrorStyle,
    objects: HashMap<String, Obj>,
    next_id: u64,
    execs: Vec<ExecInput>,
}

/// The fake engine. Stops serving when dropped.
pub struct FakeEngine {
    pub port: u16,
    pub token: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A GraphQL error to answer with.
struct GqlError {
    message: String,
    extensions: Option<Value>,
}

fn gql_err(message: impl Into<String>) -> GqlError {
    GqlError {
        message: message.into(),
        extensions: None,
    }
}

impl FakeEngine {
    /// Starts on a free loopback port with a random session token.
    pub async fn start() -> Result<Self> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        Self::start_on(0, &token).await
    }

    /// Starts on `port` (0 = any) with `token`; used to bring an engine back where it was.
    pub async fn start_on(port: u16, token: &str) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding the fake engine to port {port}"))?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            received: Vec::new(),
            rejected: 0,
            faults: VecDeque::new(),
            missing_images: Vec::new(),
            handler: None,
            exec_error_style: ExecErrorStyle::StdoutStderr,
            objects: HashMap::new(),
            next_id: 1,
            execs: Vec::new(),
        }));
        let st = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, st.clone()));
            }
        });
        Ok(Self {
            port,
            token: token.to_string(),
            state,
            server,
        })
    }

    /// The variables a worker needs to use this engine (what `dagger run` sets).
    pub fn session_env(&self) -> Vec<(String, String)> {
        vec![
            ("DAGGER_SESSION_PORT".into(), self.port.to_string()),
            ("DAGGER_SESSION_TOKEN".into(), self.token.clone()),
        ]
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("fake engine state"))
    }

    /// Installs what running a command does.
    pub fn on_exec(&self, handler: impl Fn(&ExecInput) -> ExecOutput + Send + Sync + 'static) {
        self.with(|s| s.handler = Some(Arc::new(handler)));
    }

    pub fn set_exec_error_style(&self, style: ExecErrorStyle) {
        self.with(|s| s.exec_error_style = style);
    }

    /// Makes `from(address: <image>)` fail the way a registry without that image does.
    pub fn missing_image(&self, image: &str) {
        self.with(|s| s.missing_images.push(image.to_string()));
    }

    /// Answers the next document whose canonical form contains `pattern` with `fault`.
    pub fn fail_next(&self, pattern: &str, fault: Fault) {
        self.with(|s| s.faults.push_back((pattern.to_string(), fault)));
    }

    /// Faults queued and not yet used.
    pub fn pending_faults(&self) -> usize {
        self.with(|s| s.faults.len())
    }

    /// Canonical forms of every authorised document, in arrival order.
    pub fn documents(&self) -> Vec<String> {
        self.with(|s| s.received.iter().map(|r| r.canonical.clone()).collect())
    }

    pub fn received(&self) -> Vec<Received> {
        self.with(|s| s.received.clone())
    }

    /// Canonical documents other than readiness probes (`query{version}`).
    pub fn step_documents(&self) -> Vec<String> {
        self.documents()
            .into_iter()
            .filter(|d| d != "query{version}")
            .collect()
    }

    /// Requests refused for a wrong or missing token.
    pub fn rejected(&self) -> usize {
        self.with(|s| s.rejected)
    }

    /// Every command the engine ran, in order.
    pub fn execs(&self) -> Vec<ExecInput> {
        self.with(|s| s.execs.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

struct HttpRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request(sock: &mut TcpStream) -> Option<HttpRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(HttpRequest {
        method,
        path,
        headers,
        body,
    })
}

async fn respond(sock: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(body).await;
    let _ = sock.shutdown().await;
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>) {
    let Some(req) = read_request(&mut sock).await else {
        return;
    };
    if req.method != "POST" || req.path != "/query" {
        respond(&mut sock, "404 Not Found", "text/plain", b"not found").await;
        return;
    }
    let expected = {
        let token = state.lock().expect("state").token.clone();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{token}:"))
        )
    };
    let auth = req
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str());
    if auth != Some(expected.as_str()) {
        state.lock().expect("state").rejected += 1;
        respond(
            &mut sock,
            "401 Unauthorized",
            "text/plain",
            b"unauthorized: bad session token",
        )
        .await;
        return;
    }
    let doc = match serde_json::from_slice::<Value>(&req.body) {
        Ok(v) => match v["query"].as_str() {
            Some(q) => q.to_string(),
            None => {
                respond(&mut sock, "400 Bad Request", "text/plain", b"no query").await;
                return;
            }
        },
        Err(_) => {
            respond(&mut sock, "400 Bad Request", "text/plain", b"bad json").await;
            return;
        }
    };
    let (fault, answer) = {
        let mut st = state.lock().expect("state");
        let parsed = parse_document(&doc);
        let canonical = match &parsed {
            Ok(fields) => canonical(fields),
            Err(e) => format!("<unparsable: {e}> {doc}"),
        };
        st.received.push(Received {
            raw: doc.clone(),
            canonical: canonical.clone(),
        });
        let fault = st
            .faults
            .iter()
            .position(|(p, _)| canonical.contains(p.as_str()))
            .and_then(|i| st.faults.remove(i))
            .map(|(_, f)| f);
        let answer = match (fault, parsed) {
            (Some(_), _) => Value::Null,
            (None, Ok(fields)) => match eval(&mut st, &Obj::Query, &fields) {
                Ok(data) => json!({"data": data}),
                Err(e) => {
                    let mut err = json!({"message": e.message});
                    if let Some(ext) = e.extensions {
                        err["extensions"] = ext;
                    }
                    json!({"data": null, "errors": [err]})
                }
            },
            (None, Err(e)) => {
                json!({"data": null, "errors": [{"message": format!("syntax error: {e}")}]})
            }
        };
        (fault, answer)
    };
    match fault {
        Some(Fault::Http500) => {
            respond(
                &mut sock,
                "500 Internal Server Error",
                "text/plain",
                b"engine exploded",
            )
            .await
        }
        Some(Fault::Drop) => drop(sock),
        Some(Fault::DataNull) => {
            respond(&mut sock, "200 OK", "application/json", br#"{"data":null}"#).await
        }
        None => {
            let body = serde_json::to_vec(&answer).expect("json");
            respond(&mut sock, "200 OK", "application/json", &body).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

fn arg_str(args: &[(String, ArgValue, String)], name: &str) -> Result<String, GqlError> {
    match args.iter().find(|(k, _, _)| k == name) {
        Some((_, ArgValue::Str(s), _)) => Ok(s.clone()),
        Some(_) => Err(gql_err(format!("argument `{name}` must be a string"))),
        None => Err(gql_err(format!("missing required argument `{name}`"))),
    }
}

fn arg_list(args: &[(String, ArgValue, String)], name: &str) -> Result<Vec<String>, GqlError> {
    match args.iter().find(|(k, _, _)| k == name) {
        Some((_, ArgValue::List(items), _)) => items
            .iter()
            .map(|i| match i {
                ArgValue::Str(s) => Ok(s.clone()),
                _ => Err(gql_err(format!("`{name}` must be a list of strings"))),
            })
            .collect(),
        _ => Err(gql_err(format!("missing required argument `{name}`"))),
    }
}

enum Out {
    Obj(Obj),
    Scalar(Value),
}

fn register(st: &mut State, obj: Obj) -> String {
    let prefix = match &obj {
        Obj::Container(_) => "ctr",
        Obj::Directory(_) => "dir",
        Obj::Secret { .. } => "secret",
        Obj::Cache { .. } => "cache",
        Obj::Query => "query",
        Obj::Host => "host",
        Obj::File(_) => "file",
    };
    let id = format!("{prefix}:{}", st.next_id);
    st.next_id += 1;
    st.objects.insert(id.clone(), obj);
    id
}

fn lookup(st: &State, id: &str, want: &str) -> Result<Obj, GqlError> {
    match st.objects.get(id) {
        Some(o) if want.is_empty() || o.type_name() == want => Ok(o.clone()),
        Some(o) => Err(gql_err(format!(
            "id {id} is a {}, not a {want}",
            o.type_name()
        ))),
        None => Err(gql_err(format!("no object with id {id} in this session"))),
    }
}

fn run_exec(st: &mut State, c: &mut Ctr) -> Result<(), GqlError> {
    let Some(args) = c.pending_exec.take() else {
        return Ok(());
    };
    let mut secrets = BTreeMap::new();
    for (name, sid) in &c.secret_env {
        if let Obj::Secret { plaintext } = lookup(st, sid, "Secret")? {
            secrets.insert(name.clone(), plaintext);
        }
    }
    let input = ExecInput {
        image: c.image.clone(),
        workdir: c.workdir.clone(),
        env: c.env.clone(),
        secrets,
        dirs: c.dirs.clone(),
        files: c.files.clone(),
        caches: c.caches.clone(),
        args: args.clone(),
    };
    let out = match &st.handler {
        Some(h) => h(&input),
        None => ExecOutput::default(),
    };
    st.execs.push(input);
    if out.exit_code != 0 {
        let ext = match st.exec_error_style {
            ExecErrorStyle::StdoutStderr => json!({
                "_type": "EXEC_ERROR", "cmd": args, "exitCode": out.exit_code,
                "stdout": out.stdout, "stderr": out.stderr,
            }),
            ExecErrorStyle::CombinedOutput => json!({
                "_type": "EXEC_ERROR", "cmd": args, "exitCode": out.exit_code,
                "combinedOutput": format!("{}{}", out.stdout, out.stderr),
            }),
        };
        return Err(GqlError {
            message: format!(
                "process \"{}\" did not complete successfully: exit code: {}",
                args.join(" "),
                out.exit_code
            ),
            extensions: Some(ext),
        });
    }
    let out_dir = c.dirs.entry("/out".into()).or_default();
    out_dir.extend(out.out.clone());
    c.result = Some(out);
    Ok(())
}

fn field(
    st: &mut State,
    obj: &Obj,
    name: &str,
    args: &[(String, ArgValue, String)],
) -> Result<Out, GqlError> {
    let scalar = |v: Value| Ok(Out::Scalar(v));
    match (obj, name) {
        (_, "id") => {
            let id = register(st, obj.clone());
            scalar(json!(id))
        }
        (Obj::Query, "version") => scalar(json!("v1.0.0-beta.23-fake")),
        (Obj::Query, "container") => Ok(Out::Obj(Obj::Container(Box::default()))),
        (Obj::Query, "directory") => Ok(Out::Obj(Obj::Directory(Files::new()))),
        (Obj::Query, "setSecret") => {
            arg_str(args, "name")?;
            Ok(Out::Obj(Obj::Secret {
                plaintext: arg_str(args, "plaintext")?,
            }))
        }
        (Obj::Query, "cacheVolume") => Ok(Out::Obj(Obj::Cache {
            key: arg_str(args, "key")?,
        })),
        (Obj::Query, "node") => Ok(Out::Obj(lookup(st, &arg_str(args, "id")?, "")?)),
        (Obj::Query, "host") => Ok(Out::Obj(Obj::Host)),
        (Obj::Host, _) => host::field(name, args),
        (Obj::Directory(files), "export") => host::export(files, args),
        (Obj::File(content), "contents") => scalar(json!(content)),
        (Obj::Container(c), _) => {
            let mut c = (**c).clone();
            match name {
                "from" => {
                    let address = arg_str(args, "address")?;
                    if st.missing_images.contains(&address) {
                        return Err(gql_err(format!(
                            "failed to resolve source metadata for {address}: pull access denied, repository does not exist or may require authorization"
                        )));
                    }
                    c = Ctr {
                        image: address,
                        ..Default::default()
                    };
                }
                "withWorkdir" => c.workdir = Some(arg_str(args, "path")?),
                "withEnvVariable" => c
                    .env
                    .push((arg_str(args, "name")?, arg_str(args, "value")?)),
                "withSecretVariable" => {
                    let sid = arg_str(args, "secret")?;
                    lookup(st, &sid, "Secret")?;
                    c.secret_env.push((arg_str(args, "name")?, sid));
                }
                "withDirectory" => {
                    let Obj::Directory(files) = lookup(st, &arg_str(args, "source")?, "Directory")?
                    else {
                        unreachable!("lookup checked the type")
                    };
                    c.dirs.insert(arg_str(args, "path")?, files);
                }
                "withFile" => {
                    let Obj::File(content) = lookup(st, &arg_str(args, "source")?, "File")? else {
                        unreachable!("lookup checked the type")
                    };
                    c.files.insert(arg_str(args, "path")?, content);
                }
                "withMountedCache" => {
                    let Obj::Cache { key } = lookup(st, &arg_str(args, "cache")?, "CacheVolume")?
                    else {
                        unreachable!("lookup checked the type")
                    };
                    c.caches.insert(arg_str(args, "path")?, key);
                }
                "withExec" => {
                    run_exec(st, &mut c)?;
                    c.pending_exec = Some(arg_list(args, "args")?);
                }
                "sync" => {
                    run_exec(st, &mut c)?;
                    let id = register(st, Obj::Container(Box::new(c)));
                    return scalar(json!(id));
                }
                "stdout" | "stderr" | "exitCode" => {
                    run_exec(st, &mut c)?;
                    let Some(r) = &c.result else {
                        return Err(gql_err("no command has been set"));
                    };
                    return scalar(match name {
                        "stdout" => json!(r.stdout),
                        "stderr" => json!(r.stderr),
                        _ => json!(r.exit_code),
                    });
                }
                "directory" => {
                    run_exec(st, &mut c)?;
                    let path = arg_str(args, "path")?;
                    return match c.dirs.get(&path) {
                        Some(files) => Ok(Out::Obj(Obj::Directory(files.clone()))),
                        None => Err(gql_err(format!("lstat {path}: no such file or directory"))),
                    };
                }
                _ => {
                    return Err(gql_err(format!(
                        "Cannot query field \"{name}\" on type \"Container\""
                    )));
                }
            }
            Ok(Out::Obj(Obj::Container(Box::new(c))))
        }
        (Obj::Directory(files), "entries") => scalar(json!(files.keys().collect::<Vec<_>>())),
        _ => Err(gql_err(format!(
            "Cannot query field \"{name}\" on type \"{}\"",
            obj.type_name()
        ))),
    }
}

fn eval(st: &mut State, obj: &Obj, chain: &[Sel]) -> Result<Value, GqlError> {
    let Some((first, rest)) = chain.split_first() else {
        return Err(gql_err("selection of an object needs subfields"));
    };
    match first {
        Sel::Fragment(t) => {
            if obj.type_name() != t {
                // A fragment on another type selects nothing.
                return Ok(json!({}));
            }
            eval(st, obj, rest)
        }
        Sel::Field { name, args } => {
            let value = match field(st, obj, name, args)? {
                Out::Scalar(v) if rest.is_empty() => v,
                Out::Scalar(_) => return Err(gql_err(format!("`{name}` is a leaf field"))),
                Out::Obj(o) => eval(st, &o, rest)?,
            };
            Ok(json!({ name.clone(): value }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_arguments_and_keeps_values_verbatim() {
        let doc = r#"query{node(id:"ctr:1"){... on Container{withEnvVariable(value:"a \"b\"\n", name:"X"){withExec(args:["sh","-c","echo hi"]){sync}}}}}"#;
        assert_eq!(
            canonicalize(doc),
            r#"query{node(id:"ctr:1"){... on Container{withEnvVariable(name:"X", value:"a \"b\"\n"){withExec(args:["sh","-c","echo hi"]){sync}}}}}"#
        );
        let chain = parse_document(doc).unwrap();
        match &chain[2] {
            Sel::Field { args, .. } => match &args[0].1 {
                ArgValue::Str(s) => assert_eq!(s, "a \"b\"\n"),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn evaluation_threads_directories_between_containers() {
        let mut st = State {
            token: String::new(),
            received: vec![],
            rejected: 0,
            faults: VecDeque::new(),
            missing_images: vec![],
            handler: Some(Arc::new(|i: &ExecInput| ExecOutput {
                stdout: format!("{}\n", i.args.join(" ")),
                out: [("f".to_string(), "x".to_string())].into(),
                ..Default::default()
            })),
            exec_error_style: ExecErrorStyle::StdoutStderr,
            objects: HashMap::new(),
            next_id: 1,
            execs: vec![],
        };
        let mut run = |doc: &str| eval(&mut st, &Obj::Query, &parse_document(doc).unwrap());
        let img = run(r#"query{container{from(address:"alpine"){id}}}"#)
            .ok()
            .unwrap();
        assert_eq!(img, json!({"container": {"from": {"id": "ctr:1"}}}));
        let done =
            run(r#"query{node(id:"ctr:1"){... on Container{withExec(args:["echo","hi"]){sync}}}}"#)
                .ok()
                .unwrap();
        assert_eq!(done, json!({"node": {"withExec": {"sync": "ctr:2"}}}));
        let out = run(r#"query{node(id:"ctr:2"){... on Container{stdout}}}"#)
            .ok()
            .unwrap();
        assert_eq!(out, json!({"node": {"stdout": "echo hi\n"}}));
        let dir = run(r#"query{node(id:"ctr:2"){... on Container{directory(path:"/out"){id}}}}"#)
            .ok()
            .unwrap();
        assert_eq!(dir, json!({"node": {"directory": {"id": "dir:3"}}}));
        let missing =
            run(r#"query{node(id:"ctr:2"){... on Container{directory(path:"/nope"){id}}}}"#);
        assert!(missing.is_err());
    }
}
