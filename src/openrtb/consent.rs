//! Consent strings: the IAB TCF v2 TC string (`user.consent` in 2.6,
//! `user.ext.consent` in 2.5, or section 2 of the GPP string) decoded by
//! `lib_tcstring`, and the IAB GPP string (`regs.gpp`) split and its US
//! sections decoded by `iab_gpp` (which reads TCF publisher restrictions
//! with a range header the TCF specification does not have, hence the
//! first crate for TC strings). What the bidder needs from them:
//!
//! - under GDPR, whether our TCF vendor (`bidder.tcf_vendor_id`) may use a
//!   user id and segments: consent for purposes 1 (store and access
//!   information on a device), 3 (create a personalised ads profile) and
//!   4 (select personalised ads), vendor consent, and no publisher
//!   restriction forbidding us those purposes;
//! - whether a GPP US section (national or any state's, or US Privacy v1
//!   inside GPP) says the user opted out of sale, sharing or targeted
//!   advertising.
//!
//! A string that does not decode is noted (a dropped value) and gives
//! nothing: no consent, no opt-out read from it.

use iab_gpp::sections::{Section, SectionId};
use iab_gpp::v1::GPPString;
use lib_tcstring::{PublisherRestrictionType, TcModelV2};
use std::str::FromStr;
use std::sync::Arc;

/// The TCF purposes personalised bidding needs.
pub const PURPOSES: [u8; 3] = [1, 3, 4];

/// What the request's consent strings say.
#[derive(Debug, Clone, Default)]
pub struct Consent {
    /// The TCF EU v2 consent (from `user.consent`, else GPP section 2).
    pub tcf: Option<Arc<TcModelV2>>,
    /// A GPP US section says the user opted out.
    pub us_opt_out: bool,
}

/// Why a consent string was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// The TC string does not decode as TCF v2.
    #[error("TC string: {0}")]
    Tcf(String),
    /// The GPP string (or one of its sections we read) does not decode.
    #[error("GPP string: {0}")]
    Gpp(String),
}

impl Consent {
    /// Reads the TC string (may be empty) and the GPP string (may be empty).
    /// Errors are returned beside what could be read.
    pub fn read(tc: &str, gpp: &str) -> (Consent, Vec<ConsentError>) {
        let mut c = Consent::default();
        let mut errors = Vec::new();
        let read_tc =
            |s: &str, c: &mut Consent, errors: &mut Vec<ConsentError>| match TcModelV2::try_from(s)
            {
                Ok(t) => c.tcf = Some(Arc::new(t)),
                Err(e) => errors.push(ConsentError::Tcf(format!("{e:?}"))),
            };
        if !tc.is_empty() {
            read_tc(tc, &mut c, &mut errors);
        }
        if !gpp.is_empty() {
            match GPPString::from_str(gpp) {
                Ok(g) => {
                    for &id in g.section_ids() {
                        if id == SectionId::TcfEuV2 {
                            if let (None, Some(s)) = (&c.tcf, g.section(id)) {
                                read_tc(s, &mut c, &mut errors);
                            }
                            continue;
                        }
                        match g.decode_section(id) {
                            Ok(s) => c.us_opt_out |= us_opt_out(&s),
                            Err(e) if is_us(id) => {
                                errors.push(ConsentError::Gpp(format!("section {id:?}: {e}")))
                            }
                            Err(_) => {}
                        }
                    }
                }
                Err(e) => errors.push(ConsentError::Gpp(e.to_string())),
            }
        }
        (c, errors)
    }

    /// Whether TCF vendor `vendor` may personalise: the purposes of
    /// [`PURPOSES`] consented, the vendor consented, and no publisher
    /// restriction "not allowed" naming the vendor for one of them.
    pub fn tcf_allows(&self, vendor: u16) -> bool {
        let Some(t) = &self.tcf else {
            return false;
        };
        PURPOSES.iter().all(|p| t.purposes_consent.contains(p))
            && t.vendors_consent.contains(&vendor)
            && !t.publisher_restrictions.iter().any(|r| {
                PURPOSES.contains(&r.purpose_id)
                    && matches!(r.restriction_type, PublisherRestrictionType::NotAllowed)
                    && r.vendor_list.contains(&vendor)
            })
    }
}

fn is_us(id: SectionId) -> bool {
    !matches!(
        id,
        SectionId::TcfEuV1 | SectionId::TcfEuV2 | SectionId::TcfCaV1
    )
}

/// Whether a US section says the user opted out of sale, sharing or
/// targeted advertising. US Privacy v1 and the national section are read
/// by field; the state sections, which differ in shape, by every
/// `*_opt_out` field of their serialised form (each is `OptedOut`,
/// `DidNotOptOut` or `NotApplicable`).
fn us_opt_out(s: &Section) -> bool {
    use iab_gpp::sections::us_common::OptOut;
    use iab_gpp::sections::usnat::Core;
    use iab_gpp::sections::uspv1::Flag;
    match s {
        Section::TcfEuV1(_) | Section::TcfEuV2(_) | Section::TcfCaV1(_) => false,
        Section::UspV1(u) => matches!(u.opt_out_sale, Flag::Yes),
        Section::UsNat(n) => {
            let o = |x: &OptOut| matches!(x, OptOut::OptedOut);
            match &n.core {
                Core::V1(c) => {
                    o(&c.sale_opt_out)
                        || o(&c.sharing_opt_out)
                        || o(&c.targeted_advertising_opt_out)
                }
                Core::V2(c) => {
                    o(&c.sale_opt_out)
                        || o(&c.sharing_opt_out)
                        || o(&c.targeted_advertising_opt_out)
                }
                _ => false,
            }
        }
        other => serde_json::to_value(other).is_ok_and(|v| any_opted_out(&v)),
    }
}

fn any_opted_out(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .any(|(k, v)| (k.ends_with("_opt_out") && v == "OptedOut") || any_opted_out(v)),
        serde_json::Value::Array(a) => a.iter().any(any_opted_out),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
