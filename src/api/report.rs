//! `GET /admin/report` on the admin listener: per campaign (or creative),
//! per hour or day, for a time range: bids, wins, impressions, clicks,
//! invalid clicks, spend, win rate, CTR, average clearing price; a total
//! row per period adds the bid requests refused as invalid traffic. JSON
//! (default) or CSV (`format=csv`). Figures are the shards' own counters
//! (`quality::report`), merged across shards: this process's last
//! [`KEEP_HOURS`](crate::quality::report::KEEP_HOURS) hours.
//!
//! With `[events.db]` the figures come from the database's hourly rollups
//! instead (`events::db::rollup`: every node and every run, written behind
//! as events are stored, so they trail by the writer's flush): the whole
//! fleet's history; `source=memory` asks for this process's counters.
//! Bid requests refused as invalid traffic are `ivt` events without a
//! campaign, their reason as the creative: they count in the total rows.
//!
//! Query: `from`, `to` (UTC `2026-11-30`, `2026-11-30T13`, or Unix
//! seconds; default today so far), `by=hour|day`, `creative=true` (a row
//! per creative), `campaign=ID`, `format=json|csv`, `source=db|memory`.

use super::json_error as json;
use crate::config::DbConfig;
use crate::events::db::rollup::Statements;
use crate::events::db::Db;
use crate::http::query;
use crate::http::write::civil_from_days;
use crate::http::{Request, Response};
use crate::quality::report::{Board, Counts, Key};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

/// The database's rollups, read from the admin thread (connected on first
/// use, again after a failure).
#[derive(Debug)]
pub struct History {
    cfg: DbConfig,
    conn: Mutex<Option<(tokio::runtime::Runtime, Db, Statements)>>,
}

impl History {
    /// Rollups of the database `cfg` names.
    pub fn new(cfg: DbConfig) -> History {
        History {
            cfg,
            conn: Mutex::new(None),
        }
    }

    fn read(
        &self,
        from: u64,
        to: u64,
        campaign: Option<u64>,
    ) -> Result<HashMap<Key, Counts>, String> {
        let mut g = self
            .conn
            .lock()
            .map_err(|_| "history lock poisoned".to_string())?;
        if g.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let (db, st) = rt
                .block_on(async {
                    let db = Db::connect(&self.cfg).await?;
                    let st = db.rollup_statements(&self.cfg.keyspace).await?;
                    Ok::<_, crate::events::db::DbError>((db, st))
                })
                .map_err(|e| e.to_string())?;
            *g = Some((rt, db, st));
        }
        let Some((rt, db, st)) = g.as_ref() else {
            return Err("not connected".into());
        };
        let r = rt.block_on(db.read_rollups(st, from, to, campaign));
        if r.is_err() {
            *g = None;
        }
        r.map_err(|e| e.to_string())
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time parameter as a Unix hour.
fn parse_hour(v: &str) -> Option<u64> {
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok().map(|s| s / 3600);
    }
    let (date, hour) = v.split_once('T').unwrap_or((v, "0"));
    let mut p = date.split('-');
    let y: i64 = p.next()?.parse().ok()?;
    let m: u32 = p.next()?.parse().ok().filter(|m| (1..=12).contains(m))?;
    let d: u32 = p.next()?.parse().ok().filter(|d| (1..=31).contains(d))?;
    let h: u64 = hour
        .trim_end_matches('Z')
        .split(':')
        .next()?
        .parse()
        .ok()
        .filter(|h| *h < 24)?;
    let days = days_from_civil(y, m, d);
    (days >= 0).then(|| days as u64 * 24 + h)
}

/// The period label of a Unix hour.
fn period(hour: u64, by_day: bool) -> String {
    let (y, m, d) = civil_from_days((hour / 24) as i64);
    if by_day {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{:02}:00:00Z", hour % 24)
    }
}

/// One report row.
struct Row {
    period: String,
    campaign: Option<u64>,
    creative: Option<String>,
    c: Counts,
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

impl Row {
    /// Win rate, CTR, average clearing CPM: what the counters give.
    fn rates(&self) -> (f64, f64, f64) {
        let c = &self.c;
        (
            ratio(c.wins, c.bids),
            ratio(c.clicks, c.impressions),
            ratio(c.clearing_micros.max(0) as u64, c.wins) / 1e6,
        )
    }

    fn json(&self) -> serde_json::Value {
        let c = &self.c;
        let (win_rate, ctr, avg_clearing) = self.rates();
        let mut v = serde_json::json!({
            "period": self.period,
            "campaign": self.campaign.map_or(serde_json::Value::from("all"), serde_json::Value::from),
            "bids": c.bids,
            "wins": c.wins,
            "impressions": c.impressions,
            "clicks": c.clicks,
            "invalid_clicks": c.invalid_clicks,
            "spend_micros": c.spend_micros,
            "spend_usd": c.spend_micros as f64 / 1e6,
            "win_rate": win_rate,
            "ctr": ctr,
            "avg_clearing_cpm": avg_clearing,
        });
        if let Some(cr) = &self.creative {
            v["creative"] = cr.clone().into();
        }
        if self.campaign.is_none() {
            v["ivt_requests"] = c.ivt_requests.into();
        }
        v
    }
}

const CSV_HEAD: &str = "period,campaign,creative,bids,wins,impressions,clicks,invalid_clicks,spend_micros,spend_usd,win_rate,ctr,avg_clearing_cpm,ivt_requests";

/// A CSV field: quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Answers `GET /admin/report`.
pub(super) fn report(
    req: &Request<'_, '_>,
    board: &Board,
    history: Option<&History>,
    resp: &mut Response,
) {
    let get = |k: &str| query::get(req.query, k).map(|v| v.into_owned());
    let now_hour = crate::adserve::Now::wall().secs / 3600;
    let bad = |resp: &mut Response, param: &str, why: &str| {
        json(
            resp,
            400,
            serde_json::json!({ "error": format!("{param}: {why}"), "param": param }),
        );
    };
    let from = match get("from") {
        None => now_hour / 24 * 24,
        Some(v) => match parse_hour(&v) {
            Some(h) => h,
            None => return bad(resp, "from", "not a UTC date, date and hour, or Unix time"),
        },
    };
    let to = match get("to") {
        None => now_hour + 1,
        Some(v) => match parse_hour(&v) {
            Some(h) => h,
            None => return bad(resp, "to", "not a UTC date, date and hour, or Unix time"),
        },
    };
    if to <= from {
        return bad(resp, "to", "must be after from");
    }
    let by_day = match get("by").as_deref() {
        None | Some("hour") => false,
        Some("day") => true,
        Some(_) => return bad(resp, "by", "hour or day"),
    };
    let per_creative = matches!(get("creative").as_deref(), Some("true" | "1"));
    let only = match get("campaign") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => return bad(resp, "campaign", "not a campaign id"),
        },
    };
    let csv = match get("format").as_deref() {
        None => req
            .header("accept")
            .is_some_and(|a| a.starts_with(b"text/csv")),
        Some("json") => false,
        Some("csv") => true,
        Some(_) => return bad(resp, "format", "json or csv"),
    };
    let source = match (get("source").as_deref(), history) {
        (None | Some("db"), Some(h)) => match h.read(from, to, only) {
            Ok(rows) => rows,
            Err(e) => {
                return json(
                    resp,
                    503,
                    serde_json::json!({ "error": format!("report rollups unavailable: {e}") }),
                )
            }
        },
        (Some("db"), None) => return bad(resp, "source", "no [events.db] configured"),
        (None | Some("memory"), _) => board.merged(from, to),
        (Some(_), _) => return bad(resp, "source", "db or memory"),
    };
    // Group: (period start hour, campaign or total, creative).
    let mut groups: BTreeMap<(u64, Option<u64>, Option<String>), Counts> = BTreeMap::new();
    for (
        Key {
            hour,
            campaign,
            creative,
        },
        c,
    ) in source
    {
        let start = if by_day { hour / 24 * 24 } else { hour };
        groups.entry((start, None, None)).or_default().add(&c);
        if campaign == 0 || only.is_some_and(|id| id != campaign) {
            continue;
        }
        let cr = per_creative.then_some(creative);
        groups
            .entry((start, Some(campaign), cr))
            .or_default()
            .add(&c);
    }
    let rows: Vec<Row> = groups
        .into_iter()
        .filter(|((_, campaign, _), _)| only.is_none() || campaign.is_some())
        .map(|((start, campaign, creative), c)| Row {
            period: period(start, by_day),
            campaign,
            creative,
            c,
        })
        .collect();
    if csv {
        let mut out = String::from(CSV_HEAD);
        out.push('\n');
        for r in &rows {
            let c = &r.c;
            let (win_rate, ctr, avg_clearing) = r.rates();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{}",
                r.period,
                r.campaign.map_or("all".to_string(), |c| c.to_string()),
                csv_field(r.creative.as_deref().unwrap_or("")),
                c.bids,
                c.wins,
                c.impressions,
                c.clicks,
                c.invalid_clicks,
                c.spend_micros,
                c.spend_micros as f64 / 1e6,
                win_rate,
                ctr,
                avg_clearing,
                if r.campaign.is_none() {
                    c.ivt_requests.to_string()
                } else {
                    String::new()
                },
            );
        }
        resp.set(200, "text/csv; charset=utf-8", out.as_bytes());
    } else {
        json(
            resp,
            200,
            serde_json::json!({
                "from": period(from, false),
                "to": period(to, false),
                "by": if by_day { "day" } else { "hour" },
                "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 11, 30), 20_787);
        assert_eq!(civil_from_days(20_787), (2026, 11, 30));
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(parse_hour("2026-11-30T13"), Some(20_787 * 24 + 13));
        assert_eq!(parse_hour("2026-11-30"), Some(20_787 * 24));
        assert_eq!(parse_hour("1796043600"), Some(1_796_043_600 / 3600));
        assert_eq!(parse_hour("2026-13-01"), None);
        assert_eq!(period(20_787 * 24 + 13, false), "2026-11-30T13:00:00Z");
        assert_eq!(period(20_787 * 24 + 13, true), "2026-11-30");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
