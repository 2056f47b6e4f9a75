//! Privacy signals of a bid request (`regs`, with the 2.5 `ext` locations
//! Prebid uses, and `device.lmt` / `dnt`), and the rule that turns them
//! into contextual-only bidding.

use super::consent::Consent;
use super::fields as f;
use super::BidRequest;
use serde::Deserialize;

/// Regulations (3.2.3), with the 2.5 `ext` locations Prebid uses.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// The GPP string (2.6), read in [`BidRequest::sanitize`].
    #[serde(default, deserialize_with = "f::gpp")]
    pub gpp: String,
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
    /// `regs.gdpr = 1` (or `ext.gdpr`, or GPP section 2) without TCF
    /// consent for our vendor and the purposes personalisation needs
    /// ([`super::consent`]), or with no vendor id configured.
    Gdpr,
    /// A US Privacy string with the sale opt-out, or a GPP US section with
    /// a sale, sharing or targeted advertising opt-out.
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
    /// Whether GDPR applies: `regs.gdpr`, `regs.ext.gdpr`, or GPP section 2
    /// in force.
    pub fn gdpr_applies(&self) -> bool {
        self.regs.as_ref().is_some_and(|r| {
            r.gdpr == Some(1) || r.ext.is_some_and(|e| e.gdpr == Some(1)) || r.gpp_tcf
        })
    }

    /// Reads the consent strings (`user.consent` or `user.ext.consent`, and
    /// `regs.gpp`) into [`BidRequest::consent`]; one that does not decode
    /// is noted.
    pub(super) fn read_consent(&mut self) {
        let tc = self.user.as_ref().map_or("", |u| {
            if u.consent.is_empty() {
                u.ext.as_ref().map_or("", |e| &e.consent)
            } else {
                &u.consent
            }
        });
        let gpp = self.regs.as_ref().map_or("", |r| &r.gpp);
        if tc.is_empty() && gpp.is_empty() {
            return;
        }
        let (c, errors) = Consent::read(tc, gpp);
        if !errors.is_empty() {
            super::lenient::note(super::lenient::Dropped::Consent);
        }
        self.consent = c;
    }

    /// The first privacy signal that limits this request to contextual
    /// bidding, if any. `tcf_vendor` is our IAB TCF vendor id (0: none, so
    /// no GDPR consent can be ours).
    pub fn contextual(&self, tcf_vendor: u16) -> Option<Contextual> {
        let none = Regs::default();
        let r = self.regs.as_ref().unwrap_or(&none);
        let ext = r.ext.unwrap_or_default();
        let d = self.device.as_ref();
        if r.coppa == 1 {
            Some(Contextual::Coppa)
        } else if self.gdpr_applies() && !(tcf_vendor != 0 && self.consent.tcf_allows(tcf_vendor)) {
            Some(Contextual::Gdpr)
        } else if r.us_privacy_opt_out || ext.us_privacy_opt_out || self.consent.us_opt_out {
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
