//! The fake engine's host side: `Query.host`, `Host.directory`, `Host.file` and
//! `Directory.export`, done on the real file system of the machine running the test (the engine's
//! client and the worker share it, as they do with a real `dagger run` or `dagger session`).
//!
//! Like the real engine, the paths are the client's: relative ones are refused here because the
//! fake engine has no client working directory to resolve them against. Contents are held as text
//! (the fake engine's `Files`); a file that is not UTF-8 is refused rather than mangled.

use std::path::Path;

use serde_json::json;

use super::{ArgValue, Files, GqlError, Obj, Out, arg_str, gql_err};

type Args = [(String, ArgValue, String)];

/// A field of `Host`.
pub(super) fn field(name: &str, args: &Args) -> Result<Out, GqlError> {
    for (k, _, _) in args {
        if !["path", "noCache"].contains(&k.as_str()) {
            return Err(gql_err(format!(
                "the fake engine does not support argument `{k}` of Host.{name}"
            )));
        }
    }
    let path = arg_str(args, "path")?;
    let path = absolute(&path)?;
    match name {
        "directory" => read_dir(path).map(|files| Out::Obj(Obj::Directory(files))),
        "file" => read_file(path).map(|content| Out::Obj(Obj::File(content))),
        _ => Err(gql_err(format!(
            "Cannot query field \"{name}\" on type \"Host\""
        ))),
    }
}

/// `Directory.export(path)`: writes `files` under the host directory `path` (created if needed,
/// merged with what is there, as the engine does without `wipe`) and returns the path.
pub(super) fn export(files: &Files, args: &Args) -> Result<Out, GqlError> {
    let path = arg_str(args, "path")?;
    let root = absolute(&path)?;
    let failed = |what: &Path, e: std::io::Error| {
        gql_err(format!(
            "failed to export directory to {path}: {}: {e}",
            what.display()
        ))
    };
    std::fs::create_dir_all(root).map_err(|e| failed(root, e))?;
    for (rel, content) in files {
        let target = root.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed(parent, e))?;
        }
        std::fs::write(&target, content).map_err(|e| failed(&target, e))?;
    }
    Ok(Out::Scalar(json!(path)))
}

fn absolute(path: &str) -> Result<&Path, GqlError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(gql_err(format!(
            "the fake engine has no client working directory: `{path}` must be absolute"
        )));
    }
    Ok(p)
}

fn io_err(path: &Path, e: std::io::Error) -> GqlError {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => e.to_string(),
    };
    gql_err(format!("lstat {}: {why}", path.display()))
}

fn read_file(path: &Path) -> Result<String, GqlError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(gql_err(format!("{} is not a file", path.display())));
    }
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    String::from_utf8(bytes).map_err(|_| {
        gql_err(format!(
            "the fake engine holds text only, and {} is not UTF-8",
            path.display()
        ))
    })
}

/// Every file under `root`, keyed by its path relative to `root` (`sub/file.txt`).
fn read_dir(root: &Path) -> Result<Files, GqlError> {
    let meta = std::fs::metadata(root).map_err(|e| io_err(root, e))?;
    if !meta.is_dir() {
        return Err(gql_err(format!("{} is not a directory", root.display())));
    }
    let mut files = Files::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let path = entry.map_err(|e| io_err(&dir, e))?.path();
            if std::fs::metadata(&path)
                .map_err(|e| io_err(&path, e))?
                .is_dir()
            {
                pending.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .expect("walked from root")
                .to_string_lossy()
                .to_string();
            files.insert(rel, read_file(&path)?);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn state() -> State {
        State {
            token: String::new(),
            received: vec![],
            rejected: 0,
            faults: VecDeque::new(),
            missing_images: vec![],
            handler: Some(Arc::new(|i: &ExecInput| ExecOutput {
                out: [
                    ("copy.txt".to_string(), i.files["/in/_inputs.json"].clone()),
                    (
                        "sub/dep.txt".to_string(),
                        i.dirs["/in/dep"]["a/b.txt"].clone(),
                    ),
                ]
                .into(),
                ..Default::default()
            })),
            exec_error_style: ExecErrorStyle::StdoutStderr,
            objects: HashMap::new(),
            next_id: 1,
            execs: vec![],
        }
    }

    #[test]
    fn host_files_go_in_and_exported_directories_come_out_on_the_real_file_system() {
        let root = std::env::temp_dir().join(format!(
            "tms-fake-engine-host-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(root.join("dep/a")).unwrap();
        std::fs::write(root.join("dep/a/b.txt"), "nested").unwrap();
        std::fs::write(root.join("inputs.json"), r#"{"x":1}"#).unwrap();
        let mut st = state();
        let mut run = |doc: &str| eval(&mut st, &Obj::Query, &parse_document(doc).unwrap());
        let r = root.display();
        let dir = run(&format!(
            r#"query{{host{{directory(path:"{r}/dep", noCache:true){{id}}}}}}"#
        ))
        .ok()
        .unwrap();
        assert_eq!(dir, json!({"host": {"directory": {"id": "dir:1"}}}));
        run(&format!(
            r#"query{{host{{file(path:"{r}/inputs.json"){{id}}}}}}"#
        ))
        .ok()
        .unwrap();
        run(r#"query{container{from(address:"alpine"){id}}}"#)
            .ok()
            .unwrap();
        let done = run(r#"query{node(id:"ctr:3"){... on Container{withDirectory(path:"/in/dep", source:"dir:1"){withFile(path:"/in/_inputs.json", source:"file:2"){withExec(args:["true"]){sync}}}}}}"#).ok().unwrap();
        assert_eq!(
            done,
            json!({"node": {"withDirectory": {"withFile": {"withExec": {"sync": "ctr:4"}}}}})
        );
        let exported = run(&format!(
            r#"query{{node(id:"ctr:4"){{... on Container{{directory(path:"/out"){{export(path:"{r}/out")}}}}}}}}"#
        ))
        .ok()
        .unwrap();
        assert_eq!(
            exported,
            json!({"node": {"directory": {"export": format!("{r}/out")}}})
        );
        assert_eq!(
            std::fs::read_to_string(root.join("out/copy.txt")).unwrap(),
            r#"{"x":1}"#
        );
        assert_eq!(
            std::fs::read_to_string(root.join("out/sub/dep.txt")).unwrap(),
            "nested"
        );

        // Missing host paths and relative ones are refused, as GraphQL errors.
        for doc in [
            format!(r#"query{{host{{directory(path:"{r}/nope"){{id}}}}}}"#),
            format!(r#"query{{host{{file(path:"{r}/dep"){{id}}}}}}"#),
            r#"query{host{directory(path:"relative"){id}}}"#.to_string(),
        ] {
            assert!(run(&doc).is_err(), "{doc}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
