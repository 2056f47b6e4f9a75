//! CTR scoring: feature hashing from OpenRTB fields, one ONNX Runtime
//! session per shard (through `ort`, loaded dynamically from
//! `libonnxruntime`), batched prediction of every CPC candidate of an
//! impression in one run, and model hot-reload built off the hot path.
//!
//! Features are the strings `name=value` hashed with xxh3-64 and masked to
//! [`BUCKETS`]; `deploy/train_ctr.py` hashes the Avazu columns into the same
//! names, so training and serving agree bit for bit. The model takes int64
//! bucket indices `[N, FEATURES]` and returns pCTR `[N]`.

use crate::openrtb::{BidRequest, Imp};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Hash buckets (the model's weight vector length).
pub const BUCKETS: u64 = 1 << 18;
/// Feature names, in model input column order.
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_model",
    "device_type",
    "device_conn_type",
    "banner_pos",
    "hour",
    "campaign",
    "creative",
];
/// Features per row.
pub const FEATURES: usize = 13;

/// The model compiled into the binary (trained by deploy/train_ctr.py).
pub const EMBEDDED_MODEL: &[u8] = include_bytes!("../configs/ctr.onnx");

/// Bucket of `name=value`.
pub fn bucket(name: &str, value: &str) -> i64 {
    bucket_bytes(name, value.as_bytes())
}

/// Bucket of `name=value` for raw value bytes. Short keys are hashed from a
/// stack buffer in one shot (xxh3 one-shot and streaming agree).
fn bucket_bytes(name: &str, value: &[u8]) -> i64 {
    let mut buf = [0u8; 96];
    let n = name.len() + 1 + value.len();
    let h = if n <= buf.len() {
        buf[..name.len()].copy_from_slice(name.as_bytes());
        buf[name.len()] = b'=';
        buf[name.len() + 1..n].copy_from_slice(value);
        xxhash_rust::xxh3::xxh3_64(&buf[..n])
    } else {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(name.as_bytes());
        h.update(b"=");
        h.update(value);
        h.digest()
    };
    (h & (BUCKETS - 1)) as i64
}

/// Bucket of `name=<decimal n>`, formatted on the stack; `None` hashes "".
fn bucket_num(name: &str, n: Option<u64>, min_digits: usize) -> i64 {
    let Some(mut n) = n else {
        return bucket_bytes(name, b"");
    };
    let mut d = [0u8; 20];
    let mut i = d.len();
    while n > 0 || d.len() - i < min_digits.max(1) {
        i -= 1;
        d[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    bucket_bytes(name, &d[i..])
}

/// The request-level part of a row (everything but campaign and creative).
pub fn request_row(req: &BidRequest<'_>, imp: &Imp<'_>, hour: u32) -> [i64; FEATURES] {
    let site = req.site.as_ref();
    let app = req.app.as_ref();
    let dev = req.device.as_ref();
    let app_domain = app.map_or("", |a| {
        if a.domain.is_empty() {
            a.bundle.as_ref()
        } else {
            a.domain.as_ref()
        }
    });
    let text: [&str; 7] = [
        site.map_or("", |s| s.id.as_ref()),
        site.map_or("", |s| s.domain.as_ref()),
        site.and_then(|s| s.cat.first()).map_or("", |c| c.as_ref()),
        app.map_or("", |a| a.id.as_ref()),
        app_domain,
        app.and_then(|a| a.cat.first()).map_or("", |c| c.as_ref()),
        dev.map_or("", |d| d.model.as_ref()),
    ];
    let mut row = [0i64; FEATURES];
    for (i, v) in text.iter().enumerate() {
        row[i] = bucket(FEATURE_NAMES[i], v);
    }
    // A device type, connection type or ad position not given is 0, the
    // lists' "unknown" (the Cap'n Proto transport cannot tell 0 from
    // absent; Avazu's columns hold 0 for it too).
    let known = |v: Option<u8>| Some(u64::from(v.unwrap_or(0)));
    row[7] = bucket_num(FEATURE_NAMES[7], known(dev.and_then(|d| d.devicetype)), 1);
    row[8] = bucket_num(
        FEATURE_NAMES[8],
        known(dev.and_then(|d| d.connectiontype)),
        1,
    );
    row[9] = bucket_num(
        FEATURE_NAMES[9],
        known(imp.banner.as_ref().and_then(|b| b.pos)),
        1,
    );
    // Avazu's hour column is two digits.
    row[10] = bucket_num(FEATURE_NAMES[10], Some(u64::from(hour)), 2);
    row
}

/// Completes a row with the campaign and creative.
pub fn with_ad(row: [i64; FEATURES], campaign: u64, creative: &str) -> [i64; FEATURES] {
    with_ad_buckets(row, ad_buckets(campaign, creative))
}

/// The buckets of an ad's two features (campaign, creative): fixed for an
/// index, so the index keeps them (`index::Briefs`).
pub fn ad_buckets(campaign: u64, creative: &str) -> [i64; 2] {
    [campaign_bucket(campaign), creative_bucket(creative)]
}

/// The campaign feature's bucket.
pub fn campaign_bucket(campaign: u64) -> i64 {
    bucket_num("campaign", Some(campaign), 1)
}

/// The creative feature's bucket.
pub fn creative_bucket(creative: &str) -> i64 {
    bucket("creative", creative)
}

/// `row` with the ad's buckets from [`ad_buckets`].
pub fn with_ad_buckets(mut row: [i64; FEATURES], ad: [i64; 2]) -> [i64; FEATURES] {
    row[11] = ad[0];
    row[12] = ad[1];
    row
}

/// Something that predicts click-through rates for a batch of rows.
pub trait CtrModel {
    /// pCTR per row into `out` (cleared first); false if the model failed.
    fn predict(&mut self, rows: &[[i64; FEATURES]], out: &mut Vec<f32>) -> bool;

    /// The click rate of the model's training data (its prior): the
    /// auction rescales pCTR from it to each campaign's own `expected_ctr`.
    fn base_rate(&self) -> f64;
}

/// The model metadata key holding the training click rate.
pub const BASE_RATE_KEY: &str = "click_rate";

/// `p` moved from a prior of `base` to a prior of `target` (odds scaling,
/// the prior-shift correction): `odds(p') = odds(p) x odds(target) / odds(base)`.
/// A model trained on one traffic mix (the Avazu sample clicks 17% of the
/// time) thus keeps its ranking but speaks the campaign's CTR scale.
pub fn calibrate(p: f64, base: f64, target: f64) -> f64 {
    let odds = |x: f64| x / (1.0 - x);
    if !(base > 0.0 && base < 1.0 && target > 0.0 && target < 1.0) {
        return target.clamp(0.0, 1.0);
    }
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    let o = odds(p) * odds(target) / odds(base);
    o / (1.0 + o)
}

/// The training click rate a session's model carries in its metadata.
fn read_base_rate(s: &Session) -> Result<f64, String> {
    let v = s
        .metadata()
        .map_err(|e| e.to_string())?
        .custom(BASE_RATE_KEY)
        .ok_or_else(|| format!("model metadata has no `{BASE_RATE_KEY}` (the training click rate, needed to calibrate pCTR)"))?;
    match v.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r < 1.0 => Ok(r),
        _ => Err(format!(
            "model metadata `{BASE_RATE_KEY}` = {v:?} is not a rate in (0, 1)"
        )),
    }
}

/// Why scoring could not start or a model was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScoringError {
    /// libonnxruntime could not be loaded.
    #[error("scoring.library: cannot load ONNX Runtime from {path}: {message} (install the onnxruntime wheel and set ORT_DYLIB_PATH, or set scoring.enabled = false)")]
    Library {
        /// Where we looked.
        path: String,
        /// The loader's message.
        message: String,
    },
    /// The model did not load.
    #[error("scoring.model: {origin}: {message}")]
    Model {
        /// File or "embedded model".
        origin: String,
        /// Why.
        message: String,
    },
}

static ORT: OnceLock<Result<ort::environment::Environment, ScoringError>> = OnceLock::new();

/// Loads libonnxruntime once per process (the first library asked for wins).
pub fn init_runtime(
    library: &Path,
) -> Result<&'static ort::environment::Environment, ScoringError> {
    ORT.get_or_init(|| {
        let err = |message: String| ScoringError::Library {
            path: library.display().to_string(),
            message,
        };
        if !library.exists() {
            return Err(err("no such file".into()));
        }
        let b = ort::init_from(library).map_err(|e| err(e.to_string()))?;
        b.with_name("adshard")
            .with_telemetry(false)
            .build()
            .map_err(|e| err(e.to_string()))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Builds a session for one shard: one intra-op thread, no spinning.
pub fn session(
    env: &ort::environment::Environment,
    bytes: &[u8],
    origin: &str,
) -> Result<Session, ScoringError> {
    let err = |e: String| ScoringError::Model {
        origin: origin.to_string(),
        message: e,
    };
    let s = Session::builder(env)
        .map_err(|e| err(e.to_string()))?
        .with_intra_threads(1)
        .map_err(|e| err(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| err(e.to_string()))?
        .with_intra_op_spinning(false)
        .map_err(|e| err(e.to_string()))?
        .with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
        .map_err(|e| err(e.to_string()))?
        .with_memory_pattern(false)
        .map_err(|e| err(e.to_string()))?
        .commit_from_memory(bytes)
        .map_err(|e| err(e.to_string()))?;
    // Check the contract once, here, rather than on every request.
    read_base_rate(&s).map_err(err)?;
    let mut probe = Scorer::from_session(s);
    let mut out = Vec::new();
    if !probe.predict(&[[0; FEATURES]; 2], &mut out)
        || out.len() != 2
        || out.iter().any(|p| !(0.0..=1.0).contains(p))
    {
        return Err(err(
            "model must map int64 idx [N, 13] to pctr [N] in [0, 1]".into(),
        ));
    }
    Ok(probe.session)
}

/// One shard's model session.
#[derive(Debug)]
pub struct Scorer {
    session: Session,
    base_rate: f64,
}

impl Scorer {
    /// Wraps a session built by [`session`] (which checked its metadata).
    pub fn from_session(session: Session) -> Self {
        let base_rate = read_base_rate(&session).unwrap_or(f64::NAN);
        Scorer { session, base_rate }
    }
}

impl CtrModel for Scorer {
    fn base_rate(&self) -> f64 {
        self.base_rate
    }

    fn predict(&mut self, rows: &[[i64; FEATURES]], out: &mut Vec<f32>) -> bool {
        out.clear();
        if rows.is_empty() {
            return true;
        }
        let flat = rows.as_flattened();
        let Ok(input) = TensorRef::from_array_view(([rows.len(), FEATURES], flat)) else {
            return false;
        };
        let Ok(outputs) = self.session.run(ort::inputs!["idx" => input]) else {
            return false;
        };
        let Some(Ok((_, p))) = outputs.get("pctr").map(|v| v.try_extract_tensor::<f32>()) else {
            return false;
        };
        out.extend_from_slice(p);
        out.len() == rows.len()
    }
}

/// What the model loader last did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ModelStatus {
    /// Version in service (1 = the model at start-up).
    pub version: u64,
    /// Where it came from.
    pub source: String,
    /// Successful reloads.
    pub reloads: u64,
    /// Refused models (the old one stays).
    pub errors: u64,
    /// Last refusal.
    pub last_error: Option<String>,
}

impl ModelStatus {
    /// The model loader's families on the `/metrics` page.
    pub fn render(&self, out: &mut String) {
        use crate::prom::single;
        single(
            out,
            "adshard_model_version",
            "gauge",
            "Version of the CTR model in service.",
            self.version,
        );
        single(
            out,
            "adshard_model_reloads_total",
            "counter",
            "Successful CTR model reloads.",
            self.reloads,
        );
        single(
            out,
            "adshard_model_reload_errors_total",
            "counter",
            "Refused CTR models (old model kept).",
            self.errors,
        );
    }
}

/// Per-shard session slots filled by the loader thread. A shard whose
/// version is behind takes its new session from its slot (an uncontended
/// lock, once per reload).
#[derive(Debug)]
pub struct Models {
    /// Version of the sessions in the slots.
    pub version: AtomicU64,
    slots: Vec<Mutex<Option<Session>>>,
    /// Loader status.
    pub status: Mutex<ModelStatus>,
}

impl Models {
    /// Takes shard `id`'s session if newer than `have`.
    pub fn take(&self, id: usize, have: u64) -> Option<(u64, Scorer)> {
        let v = self.version.load(Ordering::Acquire);
        if v == have {
            return None;
        }
        let mut slot = self.slots.get(id)?.lock().ok()?;
        slot.take()
            .map(|session| (v, Scorer::from_session(session)))
    }
}

/// Where the model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// Compiled in.
    Embedded,
    /// A file, watched for changes.
    File(PathBuf),
}

fn build_all(
    env: &ort::environment::Environment,
    bytes: &[u8],
    origin: &str,
    shards: usize,
) -> Result<Vec<Session>, ScoringError> {
    (0..shards).map(|_| session(env, bytes, origin)).collect()
}

/// Loads the model for every shard (failing start-up on error) and starts
/// the reload thread for a file source.
pub fn start(
    library: &Path,
    source: ModelSource,
    shards: usize,
    poll: Duration,
) -> Result<Arc<Models>, ScoringError> {
    let env = init_runtime(library)?;
    let (bytes, origin) = match &source {
        ModelSource::Embedded => (EMBEDDED_MODEL.to_vec(), "embedded model".to_string()),
        ModelSource::File(p) => (
            std::fs::read(p).map_err(|e| ScoringError::Model {
                origin: p.display().to_string(),
                message: e.to_string(),
            })?,
            p.display().to_string(),
        ),
    };
    let sessions = build_all(env, &bytes, &origin, shards)?;
    let models = Arc::new(Models {
        version: AtomicU64::new(1),
        slots: sessions.into_iter().map(|s| Mutex::new(Some(s))).collect(),
        status: Mutex::new(ModelStatus {
            version: 1,
            source: origin,
            ..Default::default()
        }),
    });
    if let ModelSource::File(path) = source {
        let m = Arc::downgrade(&models);
        let mut stamp = crate::sys::file_stamp(&path);
        std::thread::Builder::new()
            .name("model-loader".into())
            .spawn(move || loop {
                std::thread::sleep(poll);
                // The server dropped its handle: stop.
                let Some(m) = m.upgrade() else { return };
                let now = crate::sys::file_stamp(&path);
                if now.is_none() || now == stamp {
                    continue;
                }
                stamp = now;
                let origin = path.display().to_string();
                let built = std::fs::read(&path)
                    .map_err(|e| ScoringError::Model { origin: origin.clone(), message: e.to_string() })
                    .and_then(|b| build_all(env, &b, &origin, m.slots.len()));
                let mut st = m.status.lock().unwrap_or_else(|p| p.into_inner());
                match built {
                    Ok(sessions) => {
                        for (slot, s) in m.slots.iter().zip(sessions) {
                            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
                        }
                        let v = m.version.fetch_add(1, Ordering::AcqRel) + 1;
                        st.version = v;
                        st.reloads += 1;
                        st.source = origin;
                        tracing::info!(version = v, "CTR model reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "CTR model refused; keeping the model in service");
                        st.errors += 1;
                        st.last_error = Some(e.to_string());
                    }
                }
            })
            .map_err(|e| ScoringError::Model { origin: "model loader".into(), message: e.to_string() })?;
    }
    Ok(models)
}

/// UTC hour of day now.
pub fn hour_now() -> u32 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        / 3600
        % 24) as u32
}

/// The ONNX Runtime library to load: `scoring.library`, else `ORT_DYLIB_PATH`.
pub fn library_path(configured: &str) -> PathBuf {
    if !configured.is_empty() {
        return PathBuf::from(configured);
    }
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_the_training_script() {
        // Values printed by deploy/train_ctr.py's bucket() (python xxhash 4.1).
        assert_eq!(bucket("site_id", "1fbe01fe"), 6969);
        assert_eq!(bucket("hour", "02"), 167_632);
        assert!(bucket("campaign", "1") < BUCKETS as i64);
        // Stack-formatted numbers hash like their text.
        assert_eq!(bucket_num("hour", Some(2), 2), bucket("hour", "02"));
        assert_eq!(
            bucket_num("campaign", Some(1005), 1),
            bucket("campaign", "1005")
        );
        assert_eq!(
            bucket_num("device_type", None, 1),
            bucket("device_type", "")
        );
        assert_eq!(
            bucket_num("banner_pos", Some(0), 1),
            bucket("banner_pos", "0")
        );
        let long = "x".repeat(200);
        assert_eq!(bucket_bytes("site_id", long.as_bytes()), {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(format!("site_id={long}").as_bytes());
            (h.digest() & (BUCKETS - 1)) as i64
        });
    }
}

/// Tests that need libonnxruntime (deploy/dev.sh test provides it).
#[cfg(test)]
mod ort_tests {
    use super::*;

    fn env() -> &'static ort::environment::Environment {
        let lib = library_path("");
        init_runtime(&lib)
            .unwrap_or_else(|e| panic!("{e}: run the tests through deploy/dev.sh test"))
    }

    #[test]
    fn embedded_model_scores_a_batch() {
        let mut s = Scorer::from_session(session(env(), EMBEDDED_MODEL, "embedded").unwrap());
        assert_eq!(
            s.base_rate(),
            0.1721,
            "the training click rate beside the model"
        );
        // Vary a trained feature (every hour of day occurs in the training data).
        let rows: Vec<[i64; FEATURES]> = (0..20)
            .map(|h| {
                let mut r = with_ad([0; FEATURES], 1, "c");
                r[10] = bucket("hour", &format!("{h:02}"));
                r
            })
            .collect();
        let mut out = Vec::new();
        assert!(s.predict(&rows, &mut out));
        assert_eq!(out.len(), 20);
        assert!(out.iter().all(|p| *p > 0.0 && *p < 1.0));
        // Rows differ, so predictions differ: the weights are not all zero.
        assert!(out.iter().any(|p| (p - out[0]).abs() > 1e-6));
        assert!(s.predict(&[], &mut out) && out.is_empty());
    }

    #[test]
    fn corrupt_or_wrong_models_are_refused() {
        let e = session(env(), b"not an onnx model", "bad.onnx")
            .unwrap_err()
            .to_string();
        assert!(e.contains("scoring.model: bad.onnx"), "{e}");
        let e = init_runtime(Path::new("/nonexistent/libonnxruntime.so"));
        // The runtime is already loaded once per process; a second path is ignored.
        assert!(e.is_ok());
    }
}
