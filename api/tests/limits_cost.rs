//! Every GraphQL limit is refused before any database statement: each over-limit request goes
//! through the real HTTP handler and schema, with a valid token, on the Postgres `scripts/test`
//! provides, and the pool's statement counter must not move.

mod common;

use actix_web::{App, test, web};
use serde_json::{Value, json};
use tms_api::graphql::limits::{
    MAX_ALIASES, MAX_BATCH, MAX_COMPLEXITY, MAX_DEPTH, MAX_DOCUMENT_BYTES,
};
use tms_api::http::{AppState, routes};

const EMAIL: &str = "admin@limits.test";
const PASSWORD: &str = "admin-password-for-tests";

/// `runs → nodes → workflow → runs …` nested `levels` times: depth 3 per level.
pub fn deep(levels: usize) -> String {
    let mut q = "id".to_string();
    for _ in 0..levels {
        q = format!("runs {{ nodes {{ workflow {{ {q} }} }} }}");
    }
    format!("{{ {q} }}")
}

/// Fragments that spread the previous one ten times: shallow, alias-free, and small, yet
/// 10^levels fields of complexity.
pub fn complex(levels: usize) -> String {
    let mut doc = "fragment F0 on Run { id status version }\n".to_string();
    for i in 1..=levels {
        let spreads = format!("...F{} ", i - 1).repeat(10);
        doc.push_str(&format!("fragment F{i} on Run {{ {spreads}}}\n"));
    }
    format!("{{ runs {{ nodes {{ ...F{levels} }} }} }}\n{doc}")
}

pub fn aliases(n: usize) -> String {
    let fields: String = (0..n).map(|i| format!("a{i}: me {{ id }} ")).collect();
    format!("{{ {fields}}}")
}

pub fn oversized() -> String {
    // Whitespace pads it: the document is valid and tiny in every other respect.
    format!("{{ me {{ id }} {} }}", " ".repeat(MAX_DOCUMENT_BYTES))
}

struct Case {
    name: &'static str,
    body: Value,
    limit: &'static str,
    max: usize,
}

fn cases() -> Vec<Case> {
    let one = |q: String| json!({"query": q});
    vec![
        Case {
            name: "deep",
            body: one(deep(MAX_DEPTH / 3 + 1)),
            limit: "depth",
            max: MAX_DEPTH,
        },
        Case {
            name: "complex",
            body: one(complex(4)),
            limit: "complexity",
            max: MAX_COMPLEXITY,
        },
        Case {
            name: "first literal",
            body: one("{ runs(first: 101) { nodes { id } } }".into()),
            limit: "pageSize",
            max: 100,
        },
        Case {
            name: "first variable",
            body: json!({
                "query": "query($n: Int) { workflows { nodes { runs(first: $n) { nodes { id } } } } }",
                "variables": {"n": 101},
            }),
            limit: "pageSize",
            max: 100,
        },
        Case {
            name: "first variable default",
            body: one("query($n: Int = 500) { runs(first: $n) { nodes { id } } }".into()),
            limit: "pageSize",
            max: 100,
        },
        Case {
            name: "aliases",
            body: one(aliases(MAX_ALIASES + 1)),
            limit: "aliases",
            max: MAX_ALIASES,
        },
        Case {
            name: "document size",
            body: one(oversized()),
            limit: "documentBytes",
            max: MAX_DOCUMENT_BYTES,
        },
        Case {
            name: "batch",
            body: Value::Array(vec![json!({"query": "{ me { id } }"}); MAX_BATCH + 1]),
            limit: "batch",
            max: MAX_BATCH,
        },
    ]
}

#[actix_web::test]
async fn limits_refuse_every_over_limit_request_before_any_database_statement() {
    let db = common::fresh_db("tms_lim", 2).await;
    let common::Stack {
        services,
        bus,
        token,
        stop,
    } = common::stack(&db, EMAIL, PASSWORD).await;
    let state = AppState {
        schema: tms_api::graphql::build(services.clone(), false),
        ws_schema: tms_api::graphql::build_ws(services.clone(), false),
        services,
        db: db.clone(),
        bus,
        production: false,
        allowed_origins: Default::default(),
        persisted: Default::default(),
        plans: Default::default(),
        revocations: tms_core::auth::revocations::RevocationHub::detached(),
        sso: None,
        shutting_down: Default::default(),
        ws_connections: Default::default(),
        shared_subscriptions: Default::default(),
    };
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(state))
            .configure(routes(Default::default())),
    )
    .await;
    let post = |body: &Value| {
        test::TestRequest::post()
            .uri("/graphql")
            .insert_header(("authorization", format!("Bearer {token}")))
            .set_json(body)
            .to_request()
    };

    // The control: a request within the limits reaches the database (authentication, then
    // the resolver), so a zero below means "refused before", not "never counted".
    let before = db.queries_started();
    let ok: Value =
        test::call_and_read_body_json(&app, post(&json!({"query": "{ me { id } }"}))).await;
    assert!(ok.get("errors").is_none(), "{ok}");
    assert!(
        db.queries_started() > before,
        "the control query cost no statement"
    );

    for case in cases() {
        let before = db.queries_started();
        let resp: Value = test::call_and_read_body_json(&app, post(&case.body)).await;
        let err = &resp["errors"][0];
        assert_eq!(
            err["extensions"]["code"], "QUERY_LIMIT",
            "{}: {resp}",
            case.name
        );
        assert_eq!(
            err["extensions"]["limit"], case.limit,
            "{}: {resp}",
            case.name
        );
        assert_eq!(err["extensions"]["max"], case.max, "{}: {resp}", case.name);
        assert!(resp["data"].is_null(), "{}: {resp}", case.name);
        assert_eq!(
            db.queries_started() - before,
            0,
            "{}: a refused request ran database statements",
            case.name
        );
    }

    // A batch within the limit is executed, item by item.
    let batch = Value::Array(vec![json!({"query": "{ me { id } }"}); MAX_BATCH]);
    let resp: Value = test::call_and_read_body_json(&app, post(&batch)).await;
    let items = resp.as_array().expect("a batch answers with a list");
    assert_eq!(items.len(), MAX_BATCH);
    assert!(
        items.iter().all(|r| r["data"]["me"]["id"].is_string()),
        "{resp}"
    );
    stop.cancel();
}
