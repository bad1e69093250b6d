//! Range checks of numeric settings, shared by every config section and
//! flag: a value must be finite and inside its range (so NaN and infinity
//! never pass), and the message names the key and the value.

/// `value` of `key` is finite and greater than 0.
pub fn positive(key: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("`{key}` must be a positive number, not {value}"))
    }
}

/// `value` of `key` is finite and at least 0.
pub fn non_negative(key: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("`{key}` must be a number >= 0, not {value}"))
    }
}

/// `value` of `key` lies in `[low, high]`.
pub fn within(key: &str, value: f64, low: f64, high: f64) -> Result<(), String> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(format!("`{key}` must be in [{low}, {high}], not {value}"))
    }
}

/// `value` of `key` lies in `(low, high]`.
pub fn above_up_to(key: &str, value: f64, low: f64, high: f64) -> Result<(), String> {
    if value > low && value <= high {
        Ok(())
    } else {
        Err(format!("`{key}` must be in ({low}, {high}], not {value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_never_pass() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(positive("k", v).is_err());
            assert!(non_negative("k", v).is_err());
            assert!(within("k", v, -1.0, 1.0).is_err());
            assert!(above_up_to("k", v, 0.0, 1.0).is_err());
        }
        assert!(positive("k", 0.0).unwrap_err().contains("`k`"));
        assert!(non_negative("k", 0.0).is_ok());
        assert!(within("k", 1.0, -1.0, 1.0).is_ok());
        assert!(above_up_to("k", 0.0, 0.0, 1.0).is_err());
        assert!(above_up_to("k", 1.0, 0.0, 1.0).is_ok());
    }
}
