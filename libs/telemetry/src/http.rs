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
/// status) recorded for every request; always on (one histogram record per request). A tower
/// layer of its own rather than `axum::middleware::from_fn`, whose boxed future and cloned
/// inner service per request cost about 6 µs of CPU: uncached validation on an embedded node
/// went from 62 to 56 µs per answer and from 24.7k to 26.7k/s (A/B, same machine).
pub fn measured(router: axum::Router) -> axum::Router {
    router.layer(MeasureLayer)
}

#[derive(Clone, Copy)]
struct MeasureLayer;

impl<S> tower::Layer<S> for MeasureLayer {
    type Service = Measure<S>;

    fn layer(&self, inner: S) -> Measure<S> {
        Measure(inner)
    }
}

#[derive(Clone)]
struct Measure<S>(S);

impl<S, B, R> tower::Service<Request<B>> for Measure<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Measured<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_name(req.method());
        #[allow(clippy::disallowed_methods)] // a measurement
        let started = std::time::Instant::now();
        Measured {
            inner: self.0.call(req),
            route,
            method,
            started,
        }
    }
}

pin_project_lite::pin_project! {
    struct Measured<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
        method: &'static str,
        started: std::time::Instant,
    }
}

impl<F, R, E> std::future::Future for Measured<F>
where
    F: std::future::Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &output {
            let route = this
                .route
                .as_ref()
                .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
            crate::seconds_histogram!(
                "tokend-http",
                "http.server.request.duration",
                "HTTP server request duration"
            )
            .record(
                this.started.elapsed().as_secs_f64(),
                &[
                    opentelemetry::KeyValue::new("http.request.method", *this.method),
                    opentelemetry::KeyValue::new("http.route", route),
                    opentelemetry::KeyValue::new(
                        "http.response.status_code",
                        i64::from(response.status().as_u16()),
                    ),
                ],
            );
        }
        std::task::Poll::Ready(output)
    }
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
