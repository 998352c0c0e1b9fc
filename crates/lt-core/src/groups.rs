//! Many / medium / few class groups, the long-tail literature's split of the
//! test accuracy by training frequency.

use serde::{Deserialize, Serialize};

/// Thresholds on the number of training images: many `> many_above`, few
/// `<= few_at_most`, medium in between (`few_at_most < n <= many_above`).
///
/// The default is the GLMC authors' count (their `Trainer.validate`):
/// many > 100, medium 21–100, few ≤ 20. Recipes and manifests written before
/// `few_at_most` existed say `few_below = B` (few `< B`); that still reads,
/// as `few_at_most = B − 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawThresholds")]
pub struct GroupThresholds {
    pub many_above: usize,
    pub few_at_most: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThresholds {
    many_above: usize,
    #[serde(default)]
    few_at_most: Option<usize>,
    #[serde(default)]
    few_below: Option<usize>,
}

impl TryFrom<RawThresholds> for GroupThresholds {
    type Error = String;
    fn try_from(r: RawThresholds) -> Result<Self, String> {
        let few_at_most = match (r.few_at_most, r.few_below) {
            (Some(a), None) => a,
            (None, Some(b)) => b.saturating_sub(1),
            (None, None) => return Err("group thresholds need few_at_most".into()),
            (Some(_), Some(_)) => return Err("give few_at_most or few_below, not both".into()),
        };
        let t = GroupThresholds { many_above: r.many_above, few_at_most };
        t.validate()?;
        Ok(t)
    }
}

impl Default for GroupThresholds {
    fn default() -> Self {
        GroupThresholds { many_above: 100, few_at_most: 20 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Many,
    Medium,
    Few,
}

impl GroupThresholds {
    /// Checked thresholds (see [`GroupThresholds::validate`]).
    pub fn try_new(many_above: usize, few_at_most: usize) -> Result<Self, String> {
        let t = GroupThresholds { many_above, few_at_most };
        t.validate()?;
        Ok(t)
    }

    /// The groups must not overlap: `few_at_most < many_above` (equal
    /// values would leave medium empty by construction and are refused too).
    pub fn validate(&self) -> Result<(), String> {
        if self.few_at_most >= self.many_above {
            return Err(format!(
                "overlapping group thresholds: few <= {} and many > {} (few_at_most must be below many_above)",
                self.few_at_most, self.many_above
            ));
        }
        Ok(())
    }

    pub fn group(&self, train_count: usize) -> Group {
        if train_count > self.many_above {
            Group::Many
        } else if train_count <= self.few_at_most {
            Group::Few
        } else {
            Group::Medium
        }
    }

    /// "many > 100, medium 21–100, few ≤ 20", for reports.
    pub fn describe(&self) -> String {
        format!("many > {}, medium {}–{}, few ≤ {}", self.many_above, self.few_at_most + 1, self.many_above, self.few_at_most)
    }
}

/// Class ids of each group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    pub thresholds: Option<GroupThresholds>,
    pub many: Vec<usize>,
    pub medium: Vec<usize>,
    pub few: Vec<usize>,
}

impl Groups {
    pub fn from_counts(counts: &[usize], t: GroupThresholds) -> Groups {
        let mut g = Groups { thresholds: Some(t), ..Default::default() };
        for (c, &n) in counts.iter().enumerate() {
            match t.group(n) {
                Group::Many => g.many.push(c),
                Group::Medium => g.medium.push(c),
                Group::Few => g.few.push(c),
            }
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The authors' `Trainer.validate`:
    /// ```python
    /// many_shot = self.cls_num_list > 100
    /// medium_shot = (self.cls_num_list <= 100) & (self.cls_num_list > 20)
    /// few_shot = self.cls_num_list <= 20
    /// ```
    #[test]
    fn boundaries_follow_the_authors_code() {
        let t = GroupThresholds::default();
        assert_eq!(t.group(101), Group::Many);
        assert_eq!(t.group(100), Group::Medium);
        assert_eq!(t.group(21), Group::Medium);
        assert_eq!(t.group(20), Group::Few);
        assert_eq!(t.group(19), Group::Few);
        let g = Groups::from_counts(&[500, 100, 21, 20, 5], t);
        assert_eq!((g.many, g.medium, g.few), (vec![0], vec![1, 2], vec![3, 4]));
        assert_eq!(t.describe(), "many > 100, medium 21–100, few ≤ 20");
    }

    /// CIFAR-100-LT IF 100 has a class of exactly 20 images (class 67 of the
    /// exponential profile from 500): few by the authors' count.
    #[test]
    fn cifar100_if100_few_count_matches_the_authors() {
        let counts = crate::profile::exponential_counts(100, 500, 100.0).unwrap();
        let g = Groups::from_counts(&counts, GroupThresholds::default());
        let authors_few = counts.iter().filter(|&&n| n <= 20).count();
        assert!(counts.contains(&20));
        assert_eq!(g.few.len(), authors_few);
        assert_eq!((g.many.len(), g.medium.len(), g.few.len()), (35, 34, 31));
    }

    #[test]
    fn thresholds_read_both_spellings_and_refuse_overlap() {
        let new: GroupThresholds = serde_json::from_str(r#"{"many_above": 100, "few_at_most": 20}"#).unwrap();
        let old: GroupThresholds = serde_json::from_str(r#"{"many_above": 100, "few_below": 21}"#).unwrap();
        assert_eq!(new, old);
        let both = serde_json::from_str::<GroupThresholds>(r#"{"many_above": 100, "few_below": 21, "few_at_most": 20}"#);
        assert!(both.unwrap_err().to_string().contains("not both"));
        let overlap = serde_json::from_str::<GroupThresholds>(r#"{"many_above": 5, "few_below": 50}"#);
        assert!(overlap.as_ref().unwrap_err().to_string().contains("overlapping group thresholds"), "{overlap:?}");
        assert!(GroupThresholds::try_new(5, 49).is_err());
        assert!(GroupThresholds::try_new(100, 20).is_ok());
    }
}
