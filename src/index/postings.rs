//! The posting lists of an index: which lists each campaign goes into,
//! collected as positions while the index is built and compressed once
//! every campaign is in, and the memory they then hold.

use super::*;

/// One targeting dimension: campaigns per value, plus those that do not
/// target the dimension at all.
#[derive(Debug, Clone, Default)]
pub struct Dim {
    any: Bitset,
    by: HashMap<String, Bitset>,
}

impl Dim {
    /// Campaigns that do not target this dimension.
    pub fn any(&self) -> &Bitset {
        &self.any
    }
    /// Campaigns targeting value `k` (normalised as indexed).
    pub fn by(&self, k: &str) -> Option<&Bitset> {
        self.by.get(k)
    }
    /// Whether no campaign targets this dimension (then it restricts nothing).
    pub fn untargeted(&self) -> bool {
        self.by.is_empty()
    }
    /// Bytes its lists hold on the heap.
    fn heap_bytes(&self) -> usize {
        self.any.heap_bytes() + lists_bytes(&self.by)
    }
}

/// A dimension's lists while the index is built.
#[derive(Debug, Default)]
struct DimBuilder {
    any: Builder,
    by: HashMap<String, Builder>,
}

impl DimBuilder {
    fn add(&mut self, pos: usize, values: &[String], norm: fn(&str) -> Cow<'_, str>) {
        if values.is_empty() {
            self.any.set(pos);
        }
        for v in values {
            post(&mut self.by, &norm(v), pos);
        }
    }
    fn build(self, n: usize) -> Dim {
        Dim {
            any: self.any.build(n),
            by: built(self.by, n),
        }
    }
}

/// The value as is.
fn same(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

/// Adds `pos` to the posting list of `key` in `m` (made on the key's
/// first posting). Allocates the key only then.
fn post(m: &mut HashMap<String, Builder>, key: &str, pos: usize) {
    match m.get_mut(key) {
        Some(b) => b.set(pos),
        None => {
            let mut b = Builder::default();
            b.set(pos);
            m.insert(key.to_string(), b);
        }
    }
}

/// The lists of `m`, built over `n` positions.
fn built<K: Eq + std::hash::Hash>(m: HashMap<K, Builder>, n: usize) -> HashMap<K, Bitset> {
    m.into_iter().map(|(k, b)| (k, b.build(n))).collect()
}

/// Bytes the lists of `m` hold on the heap.
fn lists_bytes<K>(m: &HashMap<K, Bitset>) -> usize {
    m.values().map(Bitset::heap_bytes).sum()
}

/// The index's posting lists while it is built, as [`Index`] names them.
#[derive(Debug, Default)]
pub(super) struct Lists {
    /// Creatives by format, per campaign: `(position, creative)`.
    formats: HashMap<FormatKey, Vec<(u32, u32)>>,
    format_sets: HashMap<FormatKey, Builder>,
    open: Builder,
    deals: HashMap<String, Builder>,
    country: DimBuilder,
    region: DimBuilder,
    device_type: DimBuilder,
    os: DimBuilder,
    domain: DimBuilder,
    bundle: DimBuilder,
    category: DimBuilder,
    segment: DimBuilder,
    on_site: Builder,
    on_app: Builder,
    no_segments: Builder,
    cat_block: HashMap<String, Builder>,
    cattax: HashMap<u16, Builder>,
    adomain: HashMap<String, Builder>,
    app_bundle: HashMap<String, Builder>,
    seat: HashMap<String, Builder>,
    schain_required: Option<Builder>,
    seller_block: HashMap<String, Builder>,
    seller_domain_block: HashMap<String, Builder>,
}

impl Lists {
    /// Posts the campaign at `pos` to every list it belongs to.
    pub(super) fn add(&mut self, pos: usize, c: &Campaign) {
        let t = &c.targeting;
        for k in &c.cat {
            post(&mut self.cat_block, k, pos);
            if let Some((parent, _)) = k.split_once('-') {
                post(&mut self.cat_block, parent, pos);
            }
        }
        for d in &c.adomain {
            post(&mut self.adomain, &norm_lower(d), pos);
        }
        if let Some(b) = &c.bundle {
            post(&mut self.app_bundle, b, pos);
        }
        post(&mut self.seat, &c.seat, pos);
        if t.require_complete_schain {
            self.schain_required
                .get_or_insert_with(Builder::default)
                .set(pos);
        }
        for s in &t.blocked_sellers {
            post(&mut self.seller_block, &seller_key(s), pos);
        }
        for d in &t.blocked_seller_domains {
            post(&mut self.seller_domain_block, &norm_domain(d), pos);
        }
        self.cattax.entry(c.cattax).or_default().set(pos);
        for (k, cr) in c.creatives.iter().enumerate() {
            let key = cr.format_key();
            self.formats
                .entry(key)
                .or_default()
                .push((pos as u32, k as u32));
            self.format_sets.entry(key).or_default().set(pos);
        }
        if t.deals.is_empty() {
            self.open.set(pos);
        }
        for d in &t.deals {
            post(&mut self.deals, d, pos);
        }
        self.country.add(pos, &t.countries, norm_upper);
        self.region.add(pos, &t.regions, norm_upper);
        let dts: Vec<String> = t.device_types.iter().map(|d| d.to_string()).collect();
        self.device_type.add(pos, &dts, same);
        self.os.add(pos, &t.os, norm_lower);
        self.domain.add(pos, &t.domains, norm_domain);
        self.bundle.add(pos, &t.bundles, norm_lower);
        self.category.add(pos, &t.categories, same);
        self.segment.add(pos, &t.segments, same);
        if t.segments.is_empty() {
            self.no_segments.set(pos);
        }
        if t.inventory != Inventory::App {
            self.on_site.set(pos);
        }
        if t.inventory != Inventory::Site {
            self.on_app.set(pos);
        }
    }

    /// Builds every list into `ix`.
    pub(super) fn build_into(self, ix: &mut Index) {
        let n = ix.hot.len();
        ix.formats = self.formats;
        ix.format_sets = built(self.format_sets, n);
        ix.open = self.open.build(n);
        ix.deals = built(self.deals, n);
        ix.country = self.country.build(n);
        ix.region = self.region.build(n);
        ix.device_type = self.device_type.build(n);
        ix.os = self.os.build(n);
        ix.domain = self.domain.build(n);
        ix.bundle = self.bundle.build(n);
        ix.category = self.category.build(n);
        ix.segment = self.segment.build(n);
        ix.on_site = self.on_site.build(n);
        ix.on_app = self.on_app.build(n);
        ix.no_segments = self.no_segments.build(n);
        ix.cat_block = built(self.cat_block, n);
        ix.cattax = built(self.cattax, n);
        ix.adomain = built(self.adomain, n);
        ix.app_bundle = built(self.app_bundle, n);
        ix.seat = built(self.seat, n);
        ix.schain_required = self.schain_required.map(|b| b.build(n));
        ix.seller_block = built(self.seller_block, n);
        ix.seller_domain_block = built(self.seller_domain_block, n);
    }
}

impl Index {
    /// Bytes the posting lists hold on the heap.
    pub fn postings_bytes(&self) -> usize {
        let dims = [
            &self.country,
            &self.region,
            &self.device_type,
            &self.os,
            &self.domain,
            &self.bundle,
            &self.category,
            &self.segment,
        ];
        let sets = [&self.open, &self.on_site, &self.on_app, &self.no_segments];
        dims.iter().map(|d| d.heap_bytes()).sum::<usize>()
            + sets.iter().map(|b| b.heap_bytes()).sum::<usize>()
            + self.schain_required.as_ref().map_or(0, Bitset::heap_bytes)
            + lists_bytes(&self.format_sets)
            + lists_bytes(&self.deals)
            + lists_bytes(&self.cat_block)
            + lists_bytes(&self.cattax)
            + lists_bytes(&self.adomain)
            + lists_bytes(&self.app_bundle)
            + lists_bytes(&self.seat)
            + lists_bytes(&self.seller_block)
            + lists_bytes(&self.seller_domain_block)
    }
}
