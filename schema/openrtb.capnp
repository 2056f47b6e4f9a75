# OpenRTB 2.5/2.6 bid request and response, the subset adshard reads and
# writes, for exchanges that send Content-Type: application/x-capnp (standard
# unpacked stream framing). Zero numbers and empty texts mean "absent".
@0xe6aca2c03a9267b9;

struct BidRequest {
  id @0 :Text;
  imp @1 :List(Imp);
  site @2 :Site;
  app @3 :App;
  device @4 :Device;
  user @5 :User;
  test @6 :UInt8;
  at @7 :UInt16 = 2;
  tmax @8 :UInt32;
  wseat @9 :List(Text);
  bseat @10 :List(Text);
  cur @11 :List(Text);
  bcat @12 :List(Text);
  cattax @13 :UInt16;
  badv @14 :List(Text);
  bapp @15 :List(Text);
  coppa @16 :UInt8;
  # regs.gdpr (1 = subject to GDPR) and a US Privacy sale opt-out.
  gdpr @17 :UInt8;
  usPrivacyOptOut @18 :Bool;
  # source.schain (or the 2.5 source.ext.schain); no nodes = absent.
  schainComplete @19 :UInt8;
  schainNodes @20 :List(SChainNode);
  # IAB TCF v2 TC string (user.consent or user.ext.consent) and GPP string.
  consent @21 :Text;
  gpp @22 :Text;
}

struct SChainNode {
  asi @0 :Text;
  sid @1 :Text;
  hp @2 :UInt8;
  domain @3 :Text;
}

struct Imp {
  id @0 :Text;
  banner @1 :Banner;
  video @2 :Video;
  native @3 :Native;
  bidfloor @4 :Float64;
  bidfloorcur @5 :Text;
  pmp @6 :Pmp;
  instl @7 :UInt8;
  tagid @8 :Text;
  # 1 = https page (0 = absent).
  secure @9 :UInt8;
  audio @10 :Audio;
}

struct Format {
  w @0 :UInt32;
  h @1 :UInt32;
}

struct Banner {
  w @0 :UInt32;
  h @1 :UInt32;
  format @2 :List(Format);
  pos @3 :UInt8;
}

struct Video {
  mimes @0 :List(Text);
  w @1 :UInt32;
  h @2 :UInt32;
  minduration @3 :UInt32;
  maxduration @4 :UInt32;
  protocols @5 :List(UInt8);
  # OpenRTB 2.6 plcmt (a 2.5 placement is sent mapped to it).
  plcmt @6 :UInt8;
  rqddurs @7 :List(UInt32);
}

struct Audio {
  mimes @0 :List(Text);
  minduration @1 :UInt32;
  maxduration @2 :UInt32;
  protocols @3 :List(UInt8);
  rqddurs @4 :List(UInt32);
}

struct Native {
  # The native request as JSON text.
  request @0 :Text;
  ver @1 :Text;
}

struct Pmp {
  privateAuction @0 :UInt8;
  deals @1 :List(Deal);
}

struct Deal {
  id @0 :Text;
  bidfloor @1 :Float64;
  bidfloorcur @2 :Text;
  wseat @3 :List(Text);
  wadomain @4 :List(Text);
}

struct Site {
  id @0 :Text;
  domain @1 :Text;
  cat @2 :List(Text);
  page @3 :Text;
  publisherId @4 :Text;
}

struct App {
  id @0 :Text;
  bundle @1 :Text;
  domain @2 :Text;
  cat @3 :List(Text);
  publisherId @4 :Text;
}

struct Geo {
  country @0 :Text;
  region @1 :Text;
  city @2 :Text;
}

struct Device {
  ua @0 :Text;
  ip @1 :Text;
  devicetype @2 :UInt8;
  os @3 :Text;
  make @4 :Text;
  model @5 :Text;
  connectiontype @6 :UInt8;
  geo @7 :Geo;
  # 1 = limit ad tracking / do not track.
  lmt @8 :UInt8;
  dnt @9 :UInt8;
  ipv6 @10 :Text;
  ifa @11 :Text;
}

struct User {
  id @0 :Text;
  buyeruid @1 :Text;
  segments @2 :List(Text);
  geo @3 :Geo;
}

struct BidResponse {
  id @0 :Text;
  seatbid @1 :List(SeatBid);
  bidid @2 :Text;
  cur @3 :Text;
}

struct SeatBid {
  seat @0 :Text;
  bid @1 :List(Bid);
}

struct Bid {
  id @0 :Text;
  impid @1 :Text;
  price @2 :Float64;
  nurl @3 :Text;
  burl @4 :Text;
  lurl @5 :Text;
  adm @6 :Text;
  adomain @7 :List(Text);
  cid @8 :Text;
  crid @9 :Text;
  cat @10 :List(Text);
  cattax @11 :UInt16;
  w @12 :UInt32;
  h @13 :UInt32;
  dealid @14 :Text;
  mtype @15 :UInt8;
}
