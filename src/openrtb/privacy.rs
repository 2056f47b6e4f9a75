//! Privacy signals of a bid request (`regs`, with the 2.5 `ext` locations
//! Prebid uses, and `device.lmt` / `dnt`), and the rule that turns them
//! into contextual-only bidding.

use super::fields as f;
use super::BidRequest;
use serde::Deserialize;

/// Regulations (3.2.3), with the 2.5 `ext` locations Prebid uses.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Regs {
    /// 1 = subject to COPPA.
    #[serde(default, deserialize_with = "f::coppa")]
    pub coppa: u8,
    /// 1 = subject to GDPR (2.6).
    #[serde(default, deserialize_with = "f::flag")]
    pub gdpr: Option<u8>,
    /// CCPA US Privacy string (2.6): whether it says the user opted out of
    /// sale (`1?Y?`).
    #[serde(default, rename = "us_privacy", deserialize_with = "f::us_privacy")]
    pub us_privacy_opt_out: bool,
    /// GPP sections in force (2.6 `gpp_sid`): whether they include the EU
    /// TCF v2 section (2).
    #[serde(default, rename = "gpp_sid", deserialize_with = "f::gpp_tcf")]
    pub gpp_tcf: bool,
    /// 2.5 locations: `regs.ext.gdpr`, `regs.ext.us_privacy`.
    #[serde(default, deserialize_with = "f::regs_ext")]
    pub ext: Option<RegsExt>,
}

/// `regs.ext` (OpenRTB 2.5 as Prebid sends it).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct RegsExt {
    /// 1 = subject to GDPR.
    #[serde(default, deserialize_with = "f::flag")]
    pub gdpr: Option<u8>,
    /// Whether the US Privacy string says the user opted out of sale.
    #[serde(default, rename = "us_privacy", deserialize_with = "f::us_privacy")]
    pub us_privacy_opt_out: bool,
}

/// Why a request is answered contextually only: no user id for frequency
/// caps or events, no audience segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contextual {
    /// `regs.coppa = 1`.
    Coppa,
    /// `regs.gdpr = 1` (or `ext.gdpr`, or GPP section 2): consent strings
    /// are not decoded, so none can be relied on.
    Gdpr,
    /// A US Privacy string with the sale opt-out.
    UsPrivacy,
    /// `device.lmt = 1` (limit ad tracking).
    Lmt,
    /// `device.dnt = 1` (do not track).
    Dnt,
}

impl Contextual {
    /// Every signal, in `/metrics` order.
    pub const ALL: [Contextual; 5] = [
        Contextual::Coppa,
        Contextual::Gdpr,
        Contextual::UsPrivacy,
        Contextual::Lmt,
        Contextual::Dnt,
    ];

    /// The signal's metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Contextual::Coppa => "coppa",
            Contextual::Gdpr => "gdpr",
            Contextual::UsPrivacy => "us_privacy",
            Contextual::Lmt => "lmt",
            Contextual::Dnt => "dnt",
        }
    }
}

impl BidRequest<'_> {
    /// The first privacy signal that limits this request to contextual
    /// bidding, if any.
    pub fn contextual(&self) -> Option<Contextual> {
        let r = self.regs.unwrap_or_default();
        let ext = r.ext.unwrap_or_default();
        let d = self.device.as_ref();
        if r.coppa == 1 {
            Some(Contextual::Coppa)
        } else if r.gdpr == Some(1) || ext.gdpr == Some(1) || r.gpp_tcf {
            Some(Contextual::Gdpr)
        } else if r.us_privacy_opt_out || ext.us_privacy_opt_out {
            Some(Contextual::UsPrivacy)
        } else if d.is_some_and(|d| d.lmt == Some(1)) {
            Some(Contextual::Lmt)
        } else if d.is_some_and(|d| d.dnt == Some(1)) {
            Some(Contextual::Dnt)
        } else {
            None
        }
    }
}
