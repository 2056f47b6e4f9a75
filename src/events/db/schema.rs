//! The keyspace and tables of the event store, as CQL.

use crate::config::DbConfig;

/// The CQL statements that create the keyspace and tables for `cfg`
/// (deploy/cql/schema.cql is this, for the default configuration).
pub fn schema(cfg: &DbConfig) -> Vec<String> {
    let ks = &cfg.keyspace;
    let ttl = u64::from(cfg.ttl_days) * 86_400;
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks}\n  WITH replication = {}",
            cfg.replication
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.events (\n  \
             minute int,          -- minutes since the Unix epoch of ts\n  \
             shard smallint,\n  \
             id uuid,\n  \
             kind text,           -- bid, win, bill, loss, impression, click\n  \
             ts timestamp,\n  \
             auction_id text,\n  \
             imp_id text,\n  \
             campaign_id bigint,\n  \
             creative_id text,\n  \
             price_micros bigint, -- CPM for bids, clearing price for notices\n  \
             spend_micros bigint, -- spend this event charged\n  \
             currency text,\n  \
             bid_id text,         -- our bid id (notices are de-duplicated by it)\n  \
             test boolean,        -- test traffic: never charged, not reported\n  \
             PRIMARY KEY ((minute, shard), id)\n\
             ) WITH default_time_to_live = {ttl}\n  \
             AND compaction = {{'class': 'TimeWindowCompactionStrategy', \
             'compaction_window_unit': 'HOURS', 'compaction_window_size': 1}}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.campaign_spend (\n  \
             campaign_id bigint,\n  \
             day date,\n  \
             spend_micros counter,\n  \
             PRIMARY KEY ((campaign_id), day)\n\
             )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.spend_applied (\n  \
             campaign_id bigint,\n  \
             day date,\n  \
             id uuid,\n  \
             spend_micros bigint,\n  \
             counted boolean,     -- false: claimed, not yet added\n  \
             PRIMARY KEY ((campaign_id, day), id)\n\
             ) WITH default_time_to_live = {ttl}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.spend_by_day (\n  \
             day date,\n  \
             bucket smallint,     -- campaign_id % 16: a day's spend in 16 reads\n  \
             campaign_id bigint,\n  \
             spend_micros counter,\n  \
             PRIMARY KEY ((day, bucket), campaign_id)\n\
             )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.spend_total (\n  \
             bucket smallint,\n  \
             campaign_id bigint,\n  \
             spend_micros counter,\n  \
             PRIMARY KEY ((bucket), campaign_id)\n\
             )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.fleet_caps (\n  \
             day date,\n  \
             bucket smallint,\n  \
             campaign_id bigint,\n  \
             node text,\n  \
             today bigint,        -- the node's own spend today at its last sync\n  \
             cap_today bigint,    -- the most it may reach before its next sync\n  \
             total bigint,\n  \
             cap_total bigint,\n  \
             PRIMARY KEY ((day, bucket), campaign_id, node)\n\
             ) WITH default_time_to_live = 86400"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.nodes (\n  \
             node text,           -- one row per live adshard process\n  \
             shards int,\n  \
             seen timestamp,      -- its last heartbeat\n  \
             PRIMARY KEY (node)\n\
             ) WITH default_time_to_live = 60"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.frequency (\n  \
             owner text,          -- the spool directory's node id (<spool_dir>/node-id)\n  \
             bucket smallint,     -- key % 16: an owner's rows in 16 reads\n  \
             key bigint,          -- the (user, campaign) key a bid counted\n  \
             id uuid,             -- the bid event (a replay writes the same row)\n  \
             campaign_id bigint,\n  \
             shard smallint,\n  \
             ts timestamp,        -- when it counted; kept for the cap's window (TTL)\n  \
             PRIMARY KEY ((owner, bucket), key, id)\n\
             )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.report_hourly (\n  \
             day int,             -- days since the Unix epoch (UTC)\n  \
             bucket smallint,     -- campaign_id % 16: a day in 16 reads\n  \
             campaign_id bigint,\n  \
             hour smallint,       -- 0-23 UTC\n  \
             creative_id text,\n  \
             source text,         -- who counted: live:<node>:<boot> or seg:<node>:<segment>\n  \
             bids bigint,\n  \
             wins bigint,\n  \
             impressions bigint,\n  \
             clicks bigint,\n  \
             invalid_clicks bigint,\n  \
             spend_micros bigint,\n  \
             clearing_micros bigint, -- sum of win clearing prices (CPM micros)\n  \
             PRIMARY KEY ((day, bucket), campaign_id, hour, creative_id, source)\n\
             ) WITH default_time_to_live = 34560000"
        ),
    ]
}

/// The schema as one CQL script.
pub fn schema_script(cfg: &DbConfig) -> String {
    let mut s = String::from(
        "-- adshard event store (ScyllaDB or Cassandra). Generated by\n\
         -- `adshard cql-schema`; adshard applies it at start-up when\n\
         -- events.db.create_schema is true.\n\
         --\n\
         -- events: one row per event id; partitions are one minute of one\n\
         -- shard, so a replayed event lands on its own row again (idempotent)\n\
         -- and a partition holds at most a minute of one core's events.\n\
         -- Rows expire after events.db.ttl_days; TWCS drops whole windows.\n\
         -- campaign_spend: spend per campaign and UTC day (counters).\n\
         -- spend_applied: which events' spend is in campaign_spend, so a\n\
         -- replay does not add it twice.\n\
         -- spend_by_day, spend_total: the same increments rolled up so a\n\
         -- node reads every campaign's global spend in 32 queries\n\
         -- (adserve::fleet); nodes: heartbeats of live adshard processes;\n\
         -- fleet_caps: each node's spend and its cap (a reservation).\n\
         -- frequency: bids that counted a frequency cap, per spool owner,\n\
         -- each kept for its cap's window: read back at start-up.\n\
         -- report_hourly: events per campaign, hour and creative, each\n\
         -- source's absolute figures (see events::db::rollup); 400 days.\n\
         -- Rollups start empty in a keyspace made before they existed.\n\
         -- A keyspace made before events carried bid_id and test needs,\n\
         -- once (adshard does it at start-up with create_schema):\n\
         --   ALTER TABLE adshard.events ADD bid_id text;\n\
         --   ALTER TABLE adshard.events ADD test boolean;\n\n",
    );
    for st in schema(cfg) {
        s.push_str(&st);
        s.push_str(";\n\n");
    }
    s.pop();
    s
}
