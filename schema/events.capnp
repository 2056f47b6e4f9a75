# Events that leave a shard through its sink (bid, win, bill, loss,
# impression, click, invalid click, a request refused as invalid traffic). Framed with the standard capnp stream framing in the
# spool file. Event ids make storage and replay idempotent.
@0xe2c0e87839cca6c7;

enum EventKind {
  bid @0;
  win @1;
  bill @2;
  loss @3;
  impression @4;
  click @5;
  invalidClick @6;
  ivt @7;
}

struct Event {
  # 128-bit unique id: high and low halves.
  idHi @0 :UInt64;
  idLo @1 :UInt64;
  kind @2 :EventKind;
  # Microseconds since the Unix epoch.
  tsMicros @3 :Int64;
  shard @4 :UInt16;
  auctionId @5 :Text;
  impId @6 :Text;
  campaignId @7 :UInt64;
  creativeId @8 :Text;
  # Price in millionths of a currency unit (CPM for bids, per-event spend
  # for win and bill).
  priceMicros @9 :Int64;
  currency @10 :Text;
  # Spend this event charged to its campaign, in millionths of USD (0 when
  # it charged nothing: bids, losses, duplicates, test traffic). Feeds the
  # spend counters in the database.
  spendMicros @11 :Int64;
  # Our bid id (unique across processes and restarts): what notices are
  # de-duplicated by. Empty in spools written before it existed.
  bidId @12 :Text;
  # Bids on frequency-capped campaigns: the (user, campaign) key the cap
  # counted, so that a restart restores the counts (0: none).
  frequencyKey @13 :UInt64;
  # With frequencyKey: the cap's window in seconds (how long the count
  # matters: the database keeps the row that long).
  frequencyWindow @14 :UInt32;
  # From a test request (OpenRTB test = 1) or a test notice: stored, never
  # charged, left out of reports.
  test @15 :Bool;
}
