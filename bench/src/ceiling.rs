//! The ceiling: a minimal axum endpoint that only parses heartbeat JSON (with the same parser
//! as the collector) and answers, so the benchmark can quote GreenOps as a ratio of what this
//! machine's HTTP stack can do at all. It runs as `greenops-bench ceiling --listen ADDR`, a
//! child process of the benchmark.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use greenops_protocol::parse_heartbeat_body;

async fn heartbeats(body: Bytes) -> (StatusCode, &'static str) {
    match parse_heartbeat_body(&body) {
        Ok(_) => (
            StatusCode::OK,
            r#"{"accepted":1,"duplicates":0,"results":[]}"#,
        ),
        Err(_) => (StatusCode::UNPROCESSABLE_ENTITY, r#"{"error":{}}"#),
    }
}

/// Serves the ceiling endpoint on `listen` until the process is stopped.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new().route("/api/v1/heartbeats", post(heartbeats));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(greenops_runtime::shutdown_signal())
        .await?;
    Ok(())
}
