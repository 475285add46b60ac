//! Docs that cannot rot: every ```sh block of README.md and docs/*.md (not docs/reference/,
//! which is generated) is run, page by page in that order, with `bash -euo pipefail` against a
//! live system this test starts — the real `tms-api` and `tms-worker` (local executor) from
//! `TMS_TEST_BIN_DIR` on a fresh database of the test Postgres and the test Redis — and must
//! exit 0. A failure prints the page, the block's line, the block, its output, and the
//! api's and worker's log tails.
//!
//! Conventions for doc writers (also in docs/README.md, "For doc writers"):
//!
//! - **One reader, one terminal per page.** A page's runnable blocks run in order in one
//!   shell, so a variable or function defined in one block (`gql`, `$RUN`) is there in the
//!   next; pages do not share shells. Every page runs in the same scratch directory, shaped
//!   like a checkout on which `scripts/run` is running: `examples/` (a copy),
//!   `.tms/secrets.env` (with `TMS_BOOTSTRAP_ADMIN_PASSWORD`), `target/release/tms` (the
//!   test-built CLI), and HOME inside it (where `tms login` saves the session).
//! - **README.md starts from nothing**: `tms` is not on PATH and nobody is signed in, so its
//!   first hour does what a new user must (`export PATH="$PWD/target/release:$PATH"`,
//!   `tms login`). **docs/*.md pages start where the README's first hour ends**: `tms` on
//!   PATH (the test adds `target/release`) and the session saved by its `tms login`.
//!   All pages talk to the same system, so workflow names must differ between pages unless
//!   they come from `examples/` (`tms apply` is idempotent).
//! - **The api's address is `$TMS_URL`**, which the test sets to its api (the `tms` CLI reads
//!   it too). A block that needs the URL writes `${TMS_URL:-http://127.0.0.1:8080}`, which is
//!   what `scripts/run` serves for a reader who has not set it. A runnable block holding the
//!   literal `127.0.0.1:8080` anywhere else fails this test: it would talk to whatever listens
//!   there instead of the test's api. (Substituting the address behind the writer's back was
//!   the alternative; it would leave blocks that only work by accident.)
//! - **The admin** is `admin@localhost` with the password in `.tms/secrets.env`, as with
//!   `scripts/run`. The worker holds the secret `DEMO_TOKEN` (`TMS_SECRET_DEMO_TOKEN`), as if
//!   `scripts/run` had been started with it; pages that use a secret say so.
//! - **Blocks that cannot run here** — `scripts/run` itself, builds and installs, deploy and
//!   Kubernetes commands, a Dagger engine, a browser, an interactive prompt — are marked in
//!   the fence: ```` ```sh norun (why) ````. The test lists them. ```` ```console ```` (a
//!   transcript with output), ```` ```text ```` and other languages are not run;
//!   ```` ```bash ````/```` ```shell ```` are refused, so nothing escapes by its spelling.
//! - Each page has `PAGE_LIMIT` to finish; a block that waits for a run uses a command that
//!   ends with it (`tms run … --watch`, `tms watch`).
//! - Every relative link of these pages must lead to an existing file and, with a
//!   `#fragment` into Markdown, to one of its headings (GitHub's anchors). Links into
//!   docs/reference/ are only checked once that generated directory exists.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tms_tests::docs::{Block, DocsSystem, anchors, pages, relative_links, run_page, sh_blocks};

const PAGE_LIMIT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

/// A runnable block's use of the default address outside `${TMS_URL:-…}`, if any.
fn literal_address(b: &Block) -> Option<usize> {
    b.text
        .lines()
        .position(|l| {
            l.replace("${TMS_URL:-http://127.0.0.1:8080}", "")
                .contains("127.0.0.1:8080")
        })
        .map(|i| b.line + 1 + i)
}

#[test]
fn blocks_links_and_anchors_are_found() {
    let md = "# t\n\n```sh\necho one\n```\n\n1. item\n\n   ```sh norun (a browser)\n   open x\n   ```\n\n```` ```sh ```` in prose\n```console\n$ no\n```\n";
    let blocks = sh_blocks(md).expect("parses");
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!((blocks[0].line, blocks[0].text.as_str()), (3, "echo one\n"));
    assert!(!blocks[0].norun());
    assert_eq!((blocks[1].line, blocks[1].text.as_str()), (9, "open x\n"));
    assert!(blocks[1].norun());
    assert!(sh_blocks("```bash\nls\n```\n").is_err());
    assert_eq!(
        anchors("## 2. Make `tms` cache-friendly — or not\n```sh\n# comment\n```\n"),
        vec!["2-make-tms-cache-friendly--or-not"]
    );
    assert_eq!(
        relative_links("[a](x.md#y) and [b](https://e.org)\n```sh\n[c](z.md)\n```\n"),
        vec![(1, "x.md#y".to_string())]
    );
    assert!(sh_blocks("```sh\nls\n").is_err());
}

/// The README's tour and its first hour with the CLI are runnable, not marked away.
fn readme_first_hour_runs(blocks: &[Block]) {
    let runnable: String = blocks
        .iter()
        .filter(|b| !b.norun())
        .map(|b| b.text.as_str())
        .collect();
    for needle in [
        "mutation($i:WorkflowInput!){createWorkflow",
        "tms login",
        "tms apply -f examples/",
        "--watch",
        "tms logs",
    ] {
        assert!(
            runnable.contains(needle),
            "README.md: no runnable block has `{needle}`"
        );
    }
    assert!(
        blocks
            .iter()
            .any(|b| b.norun() && b.text.contains("scripts/run")),
        "README.md: the `scripts/run` block is gone"
    );
}

#[tokio::test]
async fn every_sh_block_of_the_docs_runs() -> anyhow::Result<()> {
    let repo = repo();
    let sys = DocsSystem::start().await?;
    let url = sys.url();
    let mut failures = Vec::new();
    let (mut ran, mut skipped) = (0usize, 0usize);
    let dir = sys.scratch(&repo, "checkout")?;
    let home = dir.join("home");
    let path = std::env::var("PATH").unwrap_or_default();
    for page in pages(&repo)? {
        let name = rel(&page);
        let blocks = sh_blocks(&std::fs::read_to_string(&page)?)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        if name == "README.md" {
            readme_first_hour_runs(&blocks);
        }
        for b in blocks.iter().filter(|b| b.norun()) {
            println!("SKIPPED {name}:{} ```sh {}", b.line, b.info);
            skipped += 1;
        }
        let runnable: Vec<&Block> = blocks.iter().filter(|b| !b.norun()).collect();
        for b in &runnable {
            if let Some(line) = literal_address(b) {
                failures.push(format!(
                    "{name}:{line}: write ${{TMS_URL:-http://127.0.0.1:8080}}, not the literal address (see tests/tests/docs.rs)"
                ));
            }
        }
        if runnable.is_empty() {
            continue;
        }
        let page_path = if name == "README.md" {
            path.clone()
        } else {
            format!("{}:{path}", dir.join("target/release").display())
        };
        let env = vec![
            ("PATH".into(), page_path),
            ("HOME".into(), home.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                home.join(".config").display().to_string(),
            ),
            ("TMS_URL".into(), url.clone()),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        let started = Instant::now();
        let result = run_page(&dir, &env, &runnable, PAGE_LIMIT).await?;
        println!(
            "RAN {name}: {} block(s) in {:.1?}",
            runnable.len(),
            started.elapsed()
        );
        ran += result.failed.unwrap_or(runnable.len());
        // The transcript, shown with --nocapture (and by cargo test when the test fails).
        for (b, out) in runnable.iter().zip(&result.outputs) {
            println!("--- {name}:{}\n{out}", b.line);
        }
        if let Some(i) = result.failed {
            let b = runnable[i];
            let why = match result.status {
                None => format!("did not finish within {PAGE_LIMIT:?}"),
                Some(c) => format!("exited with {c}"),
            };
            failures.push(format!(
                "{name}:{} (block {} of {}) {why}\n--- block\n{}--- output\n{}\n{}",
                b.line,
                i + 1,
                runnable.len(),
                b.text,
                result.outputs.get(i).map(String::as_str).unwrap_or(""),
                sys.log_tails(30)
            ));
        }
    }
    println!("doc blocks: {ran} ran, {skipped} skipped (norun)");
    assert!(
        failures.is_empty(),
        "{} doc failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

/// Every relative link of README.md and docs/*.md leads to a file that exists and, with a
/// `#fragment` into Markdown, to a heading of it. The generated references (docs/reference/)
/// are written by their own generator; links to them are only checked once it exists.
#[test]
fn every_relative_link_of_the_docs_resolves() -> anyhow::Result<()> {
    let repo = repo();
    let mut broken = Vec::new();
    for page in pages(&repo)? {
        let text = std::fs::read_to_string(&page)?;
        let dir = page.parent().expect("page dir");
        for (line, target) in relative_links(&text) {
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            let pending = !repo.join("docs/reference").exists()
                && path.starts_with(repo.join("docs/reference"));
            if !path.exists() {
                if pending {
                    println!(
                        "PENDING {}:{line}: {target} (docs/reference/ not generated yet)",
                        rel(&page)
                    );
                } else {
                    broken.push(format!("{}:{line}: {target}: no such file", rel(&page)));
                }
                continue;
            }
            if !fragment.is_empty() && path.extension().is_some_and(|e| e == "md") {
                let heads = anchors(&std::fs::read_to_string(&path)?);
                if !heads.iter().any(|h| h == fragment) {
                    broken.push(format!("{}:{line}: {target}: no such heading", rel(&page)));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    Ok(())
}
