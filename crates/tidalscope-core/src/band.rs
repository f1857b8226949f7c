//! Survey filters.

use std::fmt;
use std::str::FromStr;

/// One of the five broad-band filters of HSC-SSP and LSST used by tidalscope,
/// in wavelength order (the reference pipeline's channel order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Band {
    /// g (≈ 480 nm)
    G,
    /// r (≈ 620 nm)
    R,
    /// i (≈ 770 nm)
    I,
    /// z (≈ 890 nm)
    Z,
    /// y (≈ 1000 nm)
    Y,
}

impl Band {
    /// All five bands in channel order g, r, i, z, y.
    pub const ALL: [Band; 5] = [Band::G, Band::R, Band::I, Band::Z, Band::Y];

    /// Channel index of the band in a g,r,i,z,y cutout.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case one-letter name, as used in file names and CSV columns.
    pub fn name(self) -> &'static str {
        ["g", "r", "i", "z", "y"][self.index()]
    }

    /// Every name as a band (`g`, `HSC-R2`, …), or `None` when any is not
    /// one: where names may be bands or arbitrary labels, whether their
    /// order can be read as wavelength order.
    pub fn parse_all<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Vec<Band>> {
        names.into_iter().map(|n| n.parse().ok()).collect()
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A band name that is not one of g, r, i, z, y.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown band {0:?} (expected one of g, r, i, z, y)")]
pub struct UnknownBand(pub String);

impl FromStr for Band {
    type Err = UnknownBand;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "g" | "hsc-g" => Ok(Band::G),
            "r" | "hsc-r" | "hsc-r2" => Ok(Band::R),
            "i" | "hsc-i" | "hsc-i2" => Ok(Band::I),
            "z" | "hsc-z" => Ok(Band::Z),
            "y" | "hsc-y" => Ok(Band::Y),
            _ => Err(UnknownBand(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_hsc_filter_names_parse() {
        for b in Band::ALL {
            assert_eq!(b.name().parse::<Band>().unwrap(), b);
        }
        assert_eq!("HSC-I2".parse::<Band>().unwrap(), Band::I);
        assert!("u".parse::<Band>().is_err());
        assert_eq!(Band::parse_all(["i", "HSC-G"]), Some(vec![Band::I, Band::G]));
        assert_eq!(Band::parse_all(["g", "u"]), None);
    }
}
