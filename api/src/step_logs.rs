//! `GET /runs/{id}/steps/{name}/log[?attempt=N][&offset=BYTES]`: a step's stored log as plain
//! text (from `offset`: how a follower asks for what is new), authorized like the run (the
//! `Authorization` header, as for `/graphql`). Headers say the attempt, where the text ends
//! (`X-TMS-Log-Next-Offset`) and whether the attempt ended (`X-TMS-Log-Complete`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use tms_core::Error;

use crate::context::RequestAuth;
use crate::http::AppState;
use crate::sso::error_response;

#[derive(Deserialize)]
pub struct LogQuery {
    attempt: Option<i32>,
    offset: Option<usize>,
}

pub async fn download(
    state: web::Data<AppState>,
    http: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<LogQuery>,
) -> HttpResponse {
    let (run, step) = path.into_inner();
    let header = http
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let auth = RequestAuth::from_header(&state.services.auth, header).await;
    let who = match auth.caller() {
        Ok(who) => who,
        Err(e) => return error_response(&e),
    };
    let Ok(run_id) = uuid::Uuid::parse_str(&run) else {
        return error_response(&Error::NotFound("run"));
    };
    match state
        .services
        .logs
        .rest(who, run_id, &step, query.attempt, query.offset.unwrap_or(0))
        .await
    {
        Ok(log) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header(("X-TMS-Log-Attempt", log.attempt.to_string()))
            .insert_header(("X-TMS-Log-Complete", log.complete.to_string()))
            .insert_header(("X-TMS-Log-Next-Offset", log.next_offset.to_string()))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{run_id}-{step}-{}.log\"", log.attempt),
            ))
            .body(log.text),
        Err(e) => error_response(&e),
    }
}
