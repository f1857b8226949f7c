//! The labelling page's web server: one HTML page compiled into the binary
//! and a small JSON API over the catalogue, its cutouts, the label log and
//! the probe.
//!
//! Safe by default: the command binds 127.0.0.1; requests must name a
//! loopback host (so a web page elsewhere cannot reach it by DNS
//! rebinding); with a token every request must carry it; objects are
//! addressed by catalogue row only (no file paths); writes take JSON bodies
//! only (a cross-site form cannot send one); bad requests get 4xx.

use super::catalogue::{order, Catalogue, Queue, Scores};
use super::log::{Given, LabelLog, Verdict, CONTAMINANTS, FEATURES};
use super::render::{render, Look};
use super::retrain::{retrain, Retrained};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tidalscope_io::source::Source;

/// The page: HTML, CSS and JavaScript in one file, compiled in.
pub const PAGE: &str = include_str!("page.html");

/// Most rows one queue request returns.
const MAX_LIMIT: usize = 1000;

/// Everything the server works from.
pub struct App {
    /// The embedded objects.
    pub cat: Catalogue,
    /// Where their pixels come from.
    pub source: Box<dyn Source>,
    /// Band names of the source.
    pub bands: Vec<String>,
    /// Arcseconds per pixel (for the scale bar).
    pub pixel_scale: f64,
    /// Who is labelling (recorded with each label).
    pub annotator: String,
    /// Required on every request when set.
    pub token: Option<String>,
    /// Host headers accepted (empty: any).
    pub allowed_hosts: Vec<String>,
    /// The labels.
    pub log: Mutex<LabelLog>,
    /// Current scores.
    pub scores: RwLock<Scores>,
    /// The random queue's order.
    pub random: Vec<u32>,
    /// Where scores are kept between runs (`scores.npy`, `scores.json`).
    pub cache: Option<PathBuf>,
    /// Seed of the probe's folds.
    pub seed: u64,
    /// The latest retrain.
    pub retrain: Mutex<RetrainState>,
}

/// The state of retraining, as the page polls it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetrainState {
    /// A retrain is running.
    pub running: bool,
    /// Retrains finished since the server started.
    pub finished: u64,
    /// The last one's numbers.
    pub last: Option<Retrained>,
    /// Seconds the last one took, rescoring included.
    pub seconds: Option<f64>,
    /// Why the last one failed.
    pub error: Option<String>,
}

/// The router, ready to serve.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/state", get(state))
        .route("/api/queue", get(queue))
        .route("/api/object/{row}", get(object))
        .route("/api/cutout/{row}", get(cutout))
        .route("/api/label", post(label))
        .route("/api/undo", post(undo))
        .route("/api/retrain", post(start_retrain))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// Host and token checks before any handler.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if !app.allowed_hosts.is_empty() {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !app.allowed_hosts.iter().any(|a| a == host) {
            return error(StatusCode::FORBIDDEN, format!("host {host:?} is not this server's address"));
        }
    }
    if let Some(token) = &app.token {
        let in_header = req.headers().get("x-token").and_then(|h| h.to_str().ok()) == Some(token.as_str());
        let in_query =
            req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv.strip_prefix("token=") == Some(token.as_str())));
        if !in_header && !in_query {
            return error(StatusCode::UNAUTHORIZED, "this server needs its token (?token=… in the address)");
        }
    }
    next.run(req).await
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

/// Locks `m`, recovering the data if a holder panicked (every holder
/// leaves it consistent between statements), so one bug cannot turn every
/// later request into a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Rows labelled so far (any verdict).
fn labelled_rows(app: &App) -> HashSet<usize> {
    let log = lock(&app.log);
    log.current().iter().filter_map(|l| app.cat.by_id.get(&l.given.id).copied()).collect()
}

fn counts(app: &App) -> serde_json::Value {
    let log = lock(&app.log);
    let mut c = [0usize; 3];
    for l in log.current() {
        c[match l.given.verdict {
            Verdict::Tidal => 0,
            Verdict::NotTidal => 1,
            Verdict::Unsure => 2,
        }] += 1;
    }
    json!({ "tidal": c[0], "not_tidal": c[1], "unsure": c[2] })
}

async fn state(State(app): State<Arc<App>>) -> Response {
    // One lock at a time: the retrain thread takes them in its own order.
    let resume = {
        let log = lock(&app.log);
        log.last().map(|l| json!({ "queue": l.given.queue, "like": l.given.like, "id": l.given.id }))
    };
    let scores = {
        let s = read(&app.scores);
        (!s.values.is_empty()).then(|| s.source.clone())
    };
    let retrain = lock(&app.retrain).clone();
    Json(json!({
        "objects": app.cat.len(),
        "labelled": counts(&app),
        "annotator": app.annotator,
        "pixel_scale": app.pixel_scale,
        "bands": app.bands,
        "features": FEATURES,
        "contaminants": CONTAMINANTS,
        "scores": scores,
        "retrain": retrain,
        "resume": resume,
    }))
    .into_response()
}

/// Query of `/api/queue`.
#[derive(Debug, Deserialize)]
struct QueueQuery {
    name: String,
    /// The id "more like this" starts from.
    like: Option<String>,
    /// Rows of the queue to pass over (paging).
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

/// A page of a queue, labelled objects included and marked (the page
/// leaves them out unless asked): the order does not shift under paging as
/// objects get labelled, only when the scores change.
async fn queue(State(app): State<Arc<App>>, Query(q): Query<QueueQuery>) -> Response {
    let name: Queue = match q.name.parse() {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let like = match (&q.like, name) {
        (Some(id), _) => match app.cat.by_id.get(id) {
            Some(&r) => Some(r),
            None => return error(StatusCode::NOT_FOUND, format!("no object {id:?} in the catalogue")),
        },
        (None, Queue::Similar) => return error(StatusCode::BAD_REQUEST, "the similar queue needs like=ID"),
        (None, _) => None,
    };
    let app2 = app.clone();
    let work = move || {
        let labelled = labelled_rows(&app2);
        let scores = read(&app2.scores);
        let end = q.offset.saturating_add(q.limit.clamp(1, MAX_LIMIT));
        let rows = order(&app2.cat, &scores, &app2.random, name, like, &|_| false, end);
        let page = rows.get(q.offset.min(rows.len())..).unwrap_or_default();
        let scored = scores.values.len() == app2.cat.len();
        let note = match name {
            Queue::Score | Queue::Uncertain if !scored => {
                Some("no scores yet: shown in random order until you retrain (key r)")
            }
            _ => None,
        };
        let page: Vec<serde_json::Value> = page
            .iter()
            .map(|&r| {
                json!({ "row": r, "id": app2.cat.ids[r], "score": scores.values.get(r), "labelled": labelled.contains(&r) })
            })
            .collect();
        let total = app2.cat.len() - usize::from(name == Queue::Similar);
        json!({ "queue": q.name, "offset": q.offset, "rows": page, "end": end >= total, "note": note })
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The 404 for a row past the catalogue's end.
fn missing_row(app: &App, row: usize) -> Option<Response> {
    (row >= app.cat.len())
        .then(|| error(StatusCode::NOT_FOUND, format!("no row {row}: the catalogue has {} objects", app.cat.len())))
}

async fn object(State(app): State<Arc<App>>, UrlPath(row): UrlPath<usize>) -> Response {
    if let Some(e) = missing_row(&app, row) {
        return e;
    }
    let id = &app.cat.ids[row];
    let meta: serde_json::Map<String, serde_json::Value> =
        app.cat.meta_columns.iter().cloned().zip(app.cat.meta[row].iter().map(|v| json!(v))).collect();
    let label = {
        let log = lock(&app.log);
        log.current().into_iter().find(|l| &l.given.id == id).map(|l| {
            json!({ "verdict": l.given.verdict, "confidence": l.given.confidence, "features": l.given.features,
                    "contaminants": l.given.contaminants, "annotator": l.annotator, "time": l.time })
        })
    };
    let score = read(&app.scores).values.get(row).copied();
    Json(json!({ "row": row, "id": id, "meta": meta, "score": score, "label": label })).into_response()
}

async fn cutout(State(app): State<Arc<App>>, UrlPath(row): UrlPath<usize>, Query(look): Query<Look>) -> Response {
    if let Some(e) = missing_row(&app, row) {
        return e;
    }
    let app2 = app.clone();
    let work = move || -> anyhow::Result<Vec<u8>> {
        let index = app2.cat.index[row];
        let rec = app2
            .source
            .records(index)?
            .next()
            .ok_or_else(|| anyhow::anyhow!("object {index} is not in the data"))??;
        let img = rec.pixels.load()?;
        let (w, h, rgb) = render(&img, &look)?;
        Ok(tidalscope_io::png::encode_rgb(std::path::Path::new(&rec.file), w, h, &rgb)?)
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(png)) => {
            ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-cache")], png).into_response()
        }
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("row {row}: {e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn label(State(app): State<Arc<App>>, Json(given): Json<Given>) -> Response {
    if !app.cat.by_id.contains_key(&given.id) {
        return error(StatusCode::NOT_FOUND, format!("no object {:?} in the catalogue", given.id));
    }
    if let Err(e) = given.validate() {
        return error(StatusCode::BAD_REQUEST, format!("{e:#}"));
    }
    let app2 = app.clone();
    // Appending syncs to disk: off the async workers.
    let saved = tokio::task::spawn_blocking(move || {
        let mut log = lock(&app2.log);
        log.label(given, &app2.annotator)
    })
    .await;
    match saved {
        Ok(Ok(())) => Json(json!({ "saved": true, "labelled": counts(&app) })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("not saved: {e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("not saved: {e}")),
    }
}

/// Body of `/api/undo`.
#[derive(Debug, Deserialize)]
struct UndoBody {
    /// The object whose label to take back (default: the latest label).
    id: Option<String>,
}

async fn undo(State(app): State<Arc<App>>, Json(body): Json<UndoBody>) -> Response {
    let app2 = app.clone();
    let undone = tokio::task::spawn_blocking(move || {
        let mut log = lock(&app2.log);
        match body.id.or_else(|| log.last().map(|l| l.given.id.clone())) {
            Some(id) => log.undo(&id, &app2.annotator),
            None => Ok(None),
        }
    })
    .await;
    match undone {
        Ok(Ok(l)) => {
            let undone = l.map(|l| json!({ "id": l.given.id, "row": app.cat.by_id.get(&l.given.id) }));
            Json(json!({ "undone": undone, "labelled": counts(&app) })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn start_retrain(State(app): State<Arc<App>>, Json(_): Json<serde_json::Value>) -> Response {
    let labelled: Vec<(usize, u8)> = {
        let log = lock(&app.log);
        log.current()
            .iter()
            .filter_map(|l| Some((*app.cat.by_id.get(&l.given.id)?, l.given.verdict.label()?)))
            .collect()
    };
    {
        let mut st = lock(&app.retrain);
        if st.running {
            return error(StatusCode::CONFLICT, "a retrain is already running");
        }
        let pos = labelled.iter().filter(|(_, y)| *y == 1).count();
        let neg = labelled.len() - pos;
        let min = super::retrain::MIN_PER_CLASS;
        if pos < min || neg < min {
            return error(
                StatusCode::CONFLICT,
                format!("retraining needs at least {min} tidal and {min} not-tidal labels (have {pos} and {neg})"),
            );
        }
        st.running = true;
    }
    let app2 = app.clone();
    // Runs beside the page: labelling goes on while it fits.
    std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| retrain(&app2.cat, &labelled, app2.seed)))
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!("the probe's fit failed unexpectedly (a bug: please report it)"))
                });
        // Scores first, then the state: never two locks at once.
        let outcome = result.map(|mut r| {
            let source = format!(
                "linear probe on {} labels ({} tidal), cross-validated AUC {}",
                r.positives + r.negatives,
                r.positives,
                r.cv_auc.map_or("n/a".into(), |a| format!("{a:.3}"))
            );
            // The state keeps the numbers; the scores live in one place.
            let scores = Scores { values: std::mem::take(&mut r.scores), source };
            if let Some(dir) = &app2.cache {
                if let Err(e) = save_scores(dir, &scores) {
                    eprintln!("warning: scores not kept for the next run: {e:#}");
                }
            }
            *write(&app2.scores) = scores;
            r
        });
        let mut st = lock(&app2.retrain);
        match outcome {
            Ok(r) => {
                st.last = Some(r);
                st.error = None;
            }
            Err(e) => st.error = Some(format!("{e:#}")),
        }
        st.seconds = Some(t0.elapsed().as_secs_f64());
        st.finished += 1;
        st.running = false;
    });
    (StatusCode::ACCEPTED, Json(json!({ "started": true }))).into_response()
}

/// File names of kept scores in the cache folder.
const SCORES_NPY: &str = "scores.npy";
const SCORES_JSON: &str = "scores.json";

/// Keeps `scores` in `dir` (atomically) for the next run.
pub fn save_scores(dir: &std::path::Path, scores: &Scores) -> anyhow::Result<()> {
    let npy = dir.join(SCORES_NPY);
    let mut w = tidalscope_io::npy::NpyWriter::create(&npy, &[scores.values.len()])?;
    w.write(&scores.values)?;
    w.finish()?;
    tidalscope_io::atomic::write(&dir.join(SCORES_JSON), json!({ "source": scores.source }).to_string().as_bytes())?;
    Ok(())
}

/// Scores kept by an earlier run for `n` objects, if any.
pub fn load_scores(dir: &std::path::Path, n: usize) -> Option<Scores> {
    let (shape, values) = tidalscope_io::npy::read_f32(&dir.join(SCORES_NPY)).ok()?;
    let text = std::fs::read_to_string(dir.join(SCORES_JSON)).ok()?;
    let meta: serde_json::Value = serde_json::from_str(&text).ok()?;
    (shape == [n]).then(|| Scores { values, source: meta["source"].as_str().unwrap_or("an earlier run").to_string() })
}

/// Lists the names a loopback server answers to on `port` (browsers leave
/// out port 80).
pub fn loopback_hosts(port: u16) -> Vec<String> {
    let names = ["127.0.0.1", "localhost", "[::1]"];
    let mut hosts: Vec<String> = names.iter().map(|h| format!("{h}:{port}")).collect();
    if port == 80 {
        hosts.extend(names.iter().map(|h| h.to_string()));
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// A five-object npy source and a catalogue of 2-D embeddings over it.
    fn app(dir: &std::path::Path, token: Option<&str>) -> Arc<App> {
        let n = 8;
        let images: Vec<f32> = (0..n * 16 * 16 * 3).map(|i| ((i * 7919) % 97) as f32 / 97.0).collect();
        let npy = dir.join("images.npy");
        let mut w = tidalscope_io::npy::NpyWriter::create(&npy, &[n, 16, 16, 3]).unwrap();
        w.write(&images).unwrap();
        w.finish().unwrap();
        let source = tidalscope_io::source::open(&npy, &Default::default()).unwrap();
        let vectors: Vec<f32> = (0..n).flat_map(|i| [(i % 2) as f32 * 2.0 - 1.0 + 0.01 * i as f32, 0.3]).collect();
        let mut unit = vectors.clone();
        tidalscope_eval::search::normalise_rows(&mut unit, 2);
        let cat = Catalogue {
            ids: (0..n).map(|i| format!("g{i}")).collect(),
            index: (0..n).collect(),
            meta_columns: vec!["z".into()],
            meta: (0..n).map(|i| vec![format!("0.{i}")]).collect(),
            dim: 2,
            vectors,
            unit,
            by_id: (0..n).map(|i| (format!("g{i}"), i)).collect(),
        };
        Arc::new(App {
            random: super::super::catalogue::random_order(n, 1),
            cat,
            bands: source.info().bands.clone(),
            source,
            pixel_scale: 0.168,
            annotator: "tester".into(),
            token: token.map(str::to_string),
            allowed_hosts: loopback_hosts(8000),
            log: Mutex::new(LabelLog::open(&dir.join("labels.csv")).unwrap()),
            scores: RwLock::new(Scores::default()),
            cache: Some(dir.to_path_buf()),
            seed: 1,
            retrain: Mutex::new(RetrainState::default()),
        })
    }

    async fn call(app: &Arc<App>, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Vec<u8>) {
        let mut req = axum::http::Request::builder().method(method).uri(uri).header(header::HOST, "127.0.0.1:8000");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
        let resp = router(app.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        (status, axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap().to_vec())
    }

    fn json_of(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    #[test]
    fn labels_are_saved_undone_and_bad_requests_refused() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path(), None);
        runtime().block_on(async {
            let (s, page) = call(&app, "GET", "/", None).await;
            assert_eq!(s, StatusCode::OK);
            assert!(String::from_utf8_lossy(&page).contains("<title>tidalscope label"));
            let (s, png) = call(&app, "GET", "/api/cutout/3?view=faint&stretch=5", None).await;
            assert_eq!(s, StatusCode::OK);
            assert!(png.starts_with(b"\x89PNG"));
            let label = r#"{"id":"g2","verdict":"tidal","confidence":0.67,"features":["shell"],"queue":"random"}"#;
            let (s, body) = call(&app, "POST", "/api/label", Some(label)).await;
            assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            assert_eq!(json_of(&body)["labelled"]["tidal"], 1);
            let text = std::fs::read_to_string(dir.path().join("labels.csv")).unwrap();
            assert!(text.lines().nth(1).unwrap().starts_with("g2,1,tidal,0.67,shell,,tester,"), "{text}");
            let (_, obj) = call(&app, "GET", "/api/object/2", None).await;
            let obj = json_of(&obj);
            assert_eq!((obj["id"].as_str(), obj["meta"]["z"].as_str()), (Some("g2"), Some("0.2")));
            assert_eq!(obj["label"]["verdict"], "tidal");
            // Labelled objects are marked; pages follow each other without overlap.
            let (_, q) = call(&app, "GET", "/api/queue?name=random&limit=100", None).await;
            let q = json_of(&q);
            let rows = q["rows"].as_array().unwrap();
            assert_eq!((rows.len(), q["end"].as_bool()), (8, Some(true)));
            let marked: Vec<u64> =
                rows.iter().filter(|r| r["labelled"] == true).map(|r| r["row"].as_u64().unwrap()).collect();
            assert_eq!(marked, [2]);
            let (_, p1) = call(&app, "GET", "/api/queue?name=random&limit=3", None).await;
            let (_, p2) = call(&app, "GET", "/api/queue?name=random&offset=3&limit=5", None).await;
            let ids = |v: &serde_json::Value| -> Vec<u64> {
                v["rows"].as_array().unwrap().iter().map(|r| r["row"].as_u64().unwrap()).collect()
            };
            let (p1, p2) = (json_of(&p1), json_of(&p2));
            assert_eq!(p1["end"], false);
            let joined: Vec<u64> = ids(&p1).into_iter().chain(ids(&p2)).collect();
            assert_eq!(joined, ids(&q));
            let (s, u) = call(&app, "POST", "/api/undo", Some(r#"{"id":"g5"}"#)).await;
            assert_eq!((s, &json_of(&u)["undone"]), (StatusCode::OK, &serde_json::Value::Null));
            let (s, u) = call(&app, "POST", "/api/undo", Some("{}")).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(json_of(&u)["undone"]["id"], "g2");
            assert_eq!(std::fs::read_to_string(dir.path().join("labels.csv")).unwrap().lines().count(), 1);
            for (method, uri, body, want) in [
                ("GET", "/api/cutout/8", None, StatusCode::NOT_FOUND),
                ("GET", "/api/cutout/..%2Fetc%2Fpasswd", None, StatusCode::BAD_REQUEST),
                ("GET", "/api/cutout/1?q=-1", None, StatusCode::UNPROCESSABLE_ENTITY),
                ("GET", "/api/object/99", None, StatusCode::NOT_FOUND),
                ("GET", "/api/queue?name=best", None, StatusCode::BAD_REQUEST),
                ("GET", "/api/queue?name=similar", None, StatusCode::BAD_REQUEST),
                ("GET", "/api/queue?name=similar&like=nope", None, StatusCode::NOT_FOUND),
                ("GET", "/etc/passwd", None, StatusCode::NOT_FOUND),
                ("POST", "/api/label", Some(r#"{"id":"zz","verdict":"tidal","confidence":1}"#), StatusCode::NOT_FOUND),
                (
                    "POST",
                    "/api/label",
                    Some(r#"{"id":"g1","verdict":"maybe","confidence":1}"#),
                    StatusCode::UNPROCESSABLE_ENTITY,
                ),
                (
                    "POST",
                    "/api/label",
                    Some(r#"{"id":"g1","verdict":"tidal","confidence":2}"#),
                    StatusCode::BAD_REQUEST,
                ),
                ("POST", "/api/label", Some("not json"), StatusCode::BAD_REQUEST),
                ("POST", "/api/undo", None, StatusCode::UNSUPPORTED_MEDIA_TYPE),
                ("POST", "/api/retrain", Some("{}"), StatusCode::CONFLICT),
            ] {
                let (s, b) = call(&app, method, uri, body).await;
                assert_eq!(s, want, "{method} {uri}: {}", String::from_utf8_lossy(&b));
            }
        });
    }

    #[test]
    fn retraining_rescores_and_reorders_the_score_queue() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path(), None);
        runtime().block_on(async {
            for i in 0..6 {
                let verdict = if i % 2 == 1 { "tidal" } else { "not_tidal" };
                let body = format!(r#"{{"id":"g{i}","verdict":"{verdict}","confidence":1,"queue":"random"}}"#);
                assert_eq!(call(&app, "POST", "/api/label", Some(&body)).await.0, StatusCode::OK);
            }
            let (_, q) = call(&app, "GET", "/api/queue?name=score", None).await;
            assert!(json_of(&q)["note"].as_str().unwrap().contains("no scores yet"));
            assert_eq!(call(&app, "POST", "/api/retrain", Some("{}")).await.0, StatusCode::ACCEPTED);
            let mut st = serde_json::Value::Null;
            for _ in 0..200 {
                st = json_of(&call(&app, "GET", "/api/state", None).await.1);
                if st["retrain"]["finished"] == 1 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(st["retrain"]["finished"], 1, "{st}");
            assert!(st["retrain"]["error"].is_null(), "{st}");
            let (_, q) = call(&app, "GET", "/api/queue?name=score", None).await;
            let q = json_of(&q);
            let rows: Vec<u64> = q["rows"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["labelled"] == false)
                .map(|r| r["row"].as_u64().unwrap())
                .collect();
            // Odd rows (first coordinate > 0) were labelled tidal: 7 ranks above 6.
            assert_eq!(rows, [7, 6]);
            assert!(q["note"].is_null());
            assert!(dir.path().join(SCORES_NPY).is_file());
            assert_eq!(load_scores(dir.path(), 8).unwrap().values.len(), 8);
        });
    }

    #[test]
    fn foreign_hosts_and_missing_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path(), Some("s3cret"));
        runtime().block_on(async {
            assert_eq!(call(&app, "GET", "/api/state", None).await.0, StatusCode::UNAUTHORIZED);
            assert_eq!(call(&app, "GET", "/api/state?token=wrong", None).await.0, StatusCode::UNAUTHORIZED);
            assert_eq!(call(&app, "GET", "/api/state?token=s3cret", None).await.0, StatusCode::OK);
            let req = axum::http::Request::builder()
                .uri("/api/state?token=s3cret")
                .header(header::HOST, "evil.example:8000")
                .body(Body::empty())
                .unwrap();
            let resp = router(app.clone()).oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        });
    }
}
