//! The supply chain object (`source.schain` in 2.6, `source.ext.schain` in
//! 2.5 as Prebid sends it): every seller and reseller the impression passed
//! through, and whether the chain is complete back to the publisher.

use super::fields as f;
use serde::Deserialize;
use std::borrow::Cow;

/// Source (3.2.2).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Source<'a> {
    /// Supply chain (2.6).
    #[serde(borrow, default, deserialize_with = "f::schain")]
    pub schain: Option<SChain<'a>>,
    /// 2.5 location: `source.ext.schain`.
    #[serde(borrow, default, deserialize_with = "f::source_ext")]
    pub ext: Option<SourceExt<'a>>,
}

/// `source.ext`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SourceExt<'a> {
    /// Supply chain (2.5 location).
    #[serde(borrow, default, deserialize_with = "f::schain")]
    pub schain: Option<SChain<'a>>,
}

/// SupplyChain object (IAB SupplyChain 1.0).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SChain<'a> {
    /// 1 = the chain holds every node back to the owner of the inventory.
    #[serde(default, deserialize_with = "f::schain_flag")]
    pub complete: u8,
    /// The nodes, first the inventory owner, last the seller to us.
    #[serde(borrow, default, deserialize_with = "f::schain_nodes")]
    pub nodes: Vec<SChainNode<'a>>,
}

/// One node of a supply chain.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SChainNode<'a> {
    /// Canonical domain of the advertising system (its sellers.json).
    #[serde(borrow, default, deserialize_with = "f::schain_str")]
    pub asi: Cow<'a, str>,
    /// Seller id within that system.
    #[serde(borrow, default, deserialize_with = "f::schain_str")]
    pub sid: Cow<'a, str>,
    /// 1 = this node handles payment.
    #[serde(default, deserialize_with = "f::schain_flag")]
    pub hp: u8,
    /// Business domain of the seller (optional).
    #[serde(borrow, default, deserialize_with = "f::schain_str")]
    pub domain: Cow<'a, str>,
}

impl<'a> Source<'a> {
    /// The chain: 2.6 `source.schain`, else 2.5 `source.ext.schain`.
    pub fn chain(&self) -> Option<&SChain<'a>> {
        self.schain
            .as_ref()
            .or(self.ext.as_ref().and_then(|e| e.schain.as_ref()))
    }
}

impl SChain<'_> {
    /// Complete, and every node names its system and seller.
    pub fn is_complete(&self) -> bool {
        self.complete == 1
            && !self.nodes.is_empty()
            && self
                .nodes
                .iter()
                .all(|n| !n.asi.is_empty() && !n.sid.is_empty())
    }
}
