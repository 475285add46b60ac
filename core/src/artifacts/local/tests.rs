//! The plain-file path and `object_store`'s local store read each other's blobs: same layout,
//! same checks, and a blob being written is never listed.

use super::*;

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tms-local-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn file(dir: &Path, name: &str, content: &[u8]) -> (PathBuf, FileEntry) {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write");
    let entry = FileEntry {
        path: format!("sub/{name}"),
        sha256: hex::encode(Sha256::digest(content)),
        size: content.len() as u64,
        executable: true,
    };
    (path, entry)
}

#[tokio::test]
async fn both_paths_read_what_the_other_wrote_and_check_it() {
    let (store_dir, src) = (temp("store"), temp("src"));
    let store = BlobStore::open(store_dir.to_str().expect("utf-8")).expect("open");
    let local = store.local().expect("a directory is a local store").clone();
    let (one, e1) = file(&src, "one", b"written by the plain-file path\n");
    let (two, e2) = file(&src, "two", b"written through object_store\n");

    local.upload(&one, &e1.sha256).expect("plain upload");
    local
        .upload(&one, &e1.sha256)
        .expect("a blob stored twice is kept once");
    store
        .upload(&two, &e2.sha256)
        .await
        .expect("object_store upload");
    assert!(store.exists(&e1.sha256).await.expect("head"));
    let mut listed: Vec<String> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.0)
        .collect();
    listed.sort();
    let mut want = vec![e1.sha256.clone(), e2.sha256.clone()];
    want.sort();
    assert_eq!(listed, want, "exactly the two blobs, nothing staged");

    let (a, b) = (temp("a"), temp("b"));
    store
        .download(&e1, &a)
        .await
        .expect("object_store reads the plain blob");
    local
        .download(&e2, &b)
        .expect("the plain path reads the object_store blob");
    assert_eq!(
        std::fs::read(a.join("sub/one")).expect("read"),
        std::fs::read(&one).expect("read")
    );
    assert_eq!(
        std::fs::read(b.join("sub/two")).expect("read"),
        std::fs::read(&two).expect("read")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(b.join("sub/two"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable kept: {mode:o}");

    // A blob altered in the store, and one that is missing, are refused by name.
    std::fs::write(local.blob(&e1.sha256).expect("path"), b"tampered").expect("tamper");
    let err = local.download(&e1, &b).expect_err("tampered blob");
    assert!(
        matches!(err, ArtifactError::Corrupt(ref p) if p == "sub/one"),
        "{err}"
    );
    let missing = FileEntry {
        sha256: "ab".repeat(32),
        ..e2.clone()
    };
    let err = local.download(&missing, &b).expect_err("missing blob");
    assert!(matches!(err, ArtifactError::Missing(..)), "{err}");

    empty_dir(&b).expect("emptied");
    assert_eq!(std::fs::read_dir(&b).expect("dir").count(), 0);
    for d in [store_dir, src, a, b] {
        let _ = std::fs::remove_dir_all(d);
    }
}
