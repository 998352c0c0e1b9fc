//! Many / medium / few class groups, the long-tail literature's split of the
//! test accuracy by training frequency.

use serde::{Deserialize, Serialize};

/// Thresholds on the number of training images: many `> many_above`,
/// few `< few_below`, medium in between (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupThresholds {
    pub many_above: usize,
    pub few_below: usize,
}

impl Default for GroupThresholds {
    fn default() -> Self {
        GroupThresholds { many_above: 100, few_below: 20 }
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
    pub fn group(&self, train_count: usize) -> Group {
        if train_count > self.many_above {
            Group::Many
        } else if train_count < self.few_below {
            Group::Few
        } else {
            Group::Medium
        }
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

    #[test]
    fn boundaries_follow_the_literature() {
        let t = GroupThresholds::default();
        assert_eq!(t.group(101), Group::Many);
        assert_eq!(t.group(100), Group::Medium);
        assert_eq!(t.group(20), Group::Medium);
        assert_eq!(t.group(19), Group::Few);
        let g = Groups::from_counts(&[500, 100, 20, 19, 5], t);
        assert_eq!((g.many, g.medium, g.few), (vec![0], vec![1, 2], vec![3, 4]));
    }
}
