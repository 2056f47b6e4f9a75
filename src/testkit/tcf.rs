//! IAB TCF v2 TC strings written bit by bit, for consent tests.

/// Writes a TCF v2 core string, field by field as the IAB "Consent string
/// and vendor list formats v2" specification lays them out, so a test can
/// say exactly which purposes, vendors and restrictions a string carries.
#[derive(Debug, Clone)]
pub struct Tc {
    /// Consented purposes.
    pub purposes: Vec<u8>,
    /// Consented vendors.
    pub vendors: Vec<u16>,
    /// (purpose, restriction type, vendor)
    pub restrictions: Vec<(u8, u8, u16)>,
}

impl Tc {
    /// The base64url TC string.
    pub fn encode(&self) -> String {
        let mut bits: Vec<bool> = Vec::new();
        let put = |v: u64, n: usize, bits: &mut Vec<bool>| {
            for i in (0..n).rev() {
                bits.push(v >> i & 1 == 1);
            }
        };
        put(2, 6, &mut bits); // Version
        put(16_500_000_000, 36, &mut bits); // Created (deciseconds)
        put(16_500_000_000, 36, &mut bits); // LastUpdated
        put(31, 12, &mut bits); // CmpId
        put(640, 12, &mut bits); // CmpVersion
        put(1, 6, &mut bits); // ConsentScreen
        put(4 * 64 + 13, 12, &mut bits); // ConsentLanguage "EN"
        put(126, 12, &mut bits); // VendorListVersion
        put(4, 6, &mut bits); // TcfPolicyVersion
        put(1, 1, &mut bits); // IsServiceSpecific
        put(0, 1, &mut bits); // UseNonStandardTexts
        put(0, 12, &mut bits); // SpecialFeatureOptIns
        let mask = |ids: &[u8]| ids.iter().fold(0u64, |m, p| m | 1 << (24 - p));
        put(mask(&self.purposes), 24, &mut bits); // PurposesConsent
        put(0, 24, &mut bits); // PurposesLITransparency
        put(0, 1, &mut bits); // PurposeOneTreatment
        put(3 * 64 + 4, 12, &mut bits); // PublisherCC "DE"
        let max = self.vendors.iter().copied().max().unwrap_or(0);
        put(u64::from(max), 16, &mut bits); // MaxVendorId
        put(0, 1, &mut bits); // IsRangeEncoding: bit field
        for v in 1..=max {
            put(u64::from(self.vendors.contains(&v)), 1, &mut bits);
        }
        put(0, 16, &mut bits); // vendor legitimate interests: MaxVendorId 0
        put(0, 1, &mut bits);
        put(self.restrictions.len() as u64, 12, &mut bits); // NumPubRestrictions
        for &(p, t, v) in &self.restrictions {
            put(u64::from(p), 6, &mut bits);
            put(u64::from(t), 2, &mut bits);
            put(1, 12, &mut bits); // NumEntries
            put(0, 1, &mut bits); // IsARange: no
            put(u64::from(v), 16, &mut bits);
        }
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|c| (0..8).fold(0u8, |b, i| b << 1 | u8::from(c.get(i) == Some(&true))))
            .collect();
        base64url(&bytes)
    }
}

fn base64url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut o = String::new();
    for c in b.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, x)| n | u32::from(*x) << (16 - 8 * i));
        for i in 0..=c.len() {
            o.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    o
}
