//! HTTP server spans (OpenTelemetry HTTP conventions): named `METHOD route-template`, never
//! the raw path or query (which may hold codes or tokens), with the status code and
//! `error.type` on a 5xx; an incoming `traceparent` is honoured.

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use tower_http::trace::TraceLayer;

use crate::propagation;

/// `router` with a server span per request, when telemetry exports spans; unchanged (no
/// per-request cost) otherwise.
pub fn traced(router: axum::Router) -> axum::Router {
    if !crate::tracing_enabled() {
        return router;
    }
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(request_span)
            .on_request(())
            .on_response(record_response)
            .on_failure(()),
    )
}

fn request_span<B>(req: &Request<B>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let method = method_name(req.method());
    let span = tracing::info_span!(
        "request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        url.scheme = "http",
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    propagation::set_remote_parent(&span, |key| {
        req.headers().get(key).and_then(|v| v.to_str().ok())
    });
    span
}

fn record_response<B>(res: &Response<B>, _latency: std::time::Duration, span: &tracing::Span) {
    let status = res.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// `router` with `http.server.request.duration` (seconds, by method, route template and
/// status) recorded for every request; always on (one histogram record per request).
pub fn measured(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(measure))
}

async fn measure(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_name(req.method());
    #[allow(clippy::disallowed_methods)] // a measurement
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let duration = crate::seconds_histogram!(
        "tokend-http",
        "http.server.request.duration",
        "HTTP server request duration"
    );
    duration.record(
        started.elapsed().as_secs_f64(),
        &[
            opentelemetry::KeyValue::new("http.request.method", method),
            opentelemetry::KeyValue::new("http.route", route),
            opentelemetry::KeyValue::new(
                "http.response.status_code",
                i64::from(response.status().as_u16()),
            ),
        ],
    );
    response
}

/// The method as the HTTP conventions name it: a known method, or `_OTHER` (so a client
/// cannot make a label value per made-up method).
fn method_name(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("_OTHER", |(_, name)| name)
}

/// `GET /metrics`: every metric in the Prometheus text format.
pub fn metrics_router(metrics: crate::PrometheusText) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                metrics.render(),
            )
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_up_method_is_one_label_value() {
        assert_eq!(method_name(&axum::http::Method::POST), "POST");
        let made_up = axum::http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_name(&made_up), "_OTHER");
    }
}
