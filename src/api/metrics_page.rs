//! `/metrics`: the Prometheus page. The shards' counters and histograms come
//! from the registry; every other stats type (index loader, notice table,
//! spool, database writer, model loader) renders its own families.

use super::Api;
use crate::events::SpoolStats;
use crate::http::Response;

impl Api {
    pub(super) fn metrics_page(&self, resp: &mut Response) {
        let text = self.metrics_text();
        resp.set(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            text.as_bytes(),
        );
    }

    fn metrics_text(&self) -> String {
        // This shard's quantiles are published fresh; others' are at most
        // one publish interval old.
        self.metrics.publish();
        let mut text = String::with_capacity(16 * 1024);
        self.shared.registry.render(&mut text);
        self.deps.index.status.load().render(&mut text);
        self.deps.dedupe.render(&mut text);
        self.deps.ivt.render(&mut text);
        self.deps.restored.render(&mut text);
        SpoolStats::render(&self.deps.spool, &mut text);
        if let Some(db) = &self.deps.db {
            db.render(&self.deps.spool, &mut text);
        }
        if let Some(f) = &self.deps.fleet {
            f.status.render(&mut text);
        }
        if let Some(m) = &self.deps.models {
            m.status
                .lock()
                .map(|g| g.clone())
                .unwrap_or_else(|p| p.into_inner().clone())
                .render(&mut text);
        }
        text
    }
}
