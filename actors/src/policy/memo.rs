//! What a session already made of a statement's shape.
//!
//! Agents send a handful of statements over and over with other numbers.
//! The shape cache ([`super::shape`]) saves the parse; this saves judging
//! the same classification against every rule again. A session keeps the
//! last few classifications it allowed, by the shape cache's `Rc` (the
//! same allocation for every statement of one shape while the cache keeps
//! it, and never reused for another while held here), with the columns
//! they mention.
//!
//! Only what judging alone decides is kept: statements that are allowed
//! and neither prepare, execute nor deallocate a name (those depend on the
//! session's prepared statements, which change). The policy is fixed for
//! a session's life and judging is a function of the policy and the
//! classification, so a kept answer is the answer judging would give.

use std::collections::VecDeque;
use std::rc::Rc;

use super::shape::Shared;
use super::tracker::Mentioned;

/// Classifications kept per session: the statements of a typical agent's
/// loop (pgbench's TPC-B has five).
const KEPT: usize = 8;

#[derive(Default)]
pub struct Allowed {
    kept: VecDeque<(Shared, Mentioned)>,
}

impl Allowed {
    /// The columns an allowed statement of this classification mentions.
    pub fn get(&self, infos: &Shared) -> Option<&Mentioned> {
        self.kept
            .iter()
            .find(|(k, _)| Rc::ptr_eq(k, infos))
            .map(|(_, m)| m)
    }

    /// Remember that `infos` was allowed, mentioning `mentioned`.
    pub fn keep(&mut self, infos: Shared, mentioned: Mentioned) {
        if self.kept.len() >= KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back((infos, mentioned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Action;
    use crate::policy::classify::classify_shared;
    use crate::policy::tracker::Decision;
    use crate::policy::tracker::tests::{approve, rule, tracker};

    #[test]
    fn a_classification_is_found_by_its_allocation_only() {
        let (a, kept) = classify_shared("SELECT email FROM customers WHERE id = 41").unwrap();
        assert!(kept);
        let (b, _) = classify_shared("SELECT email FROM customers WHERE id = 42").unwrap();
        assert!(Rc::ptr_eq(&a, &b), "one shape, one classification");
        let mut memo = Allowed::default();
        memo.keep(a.clone(), Mentioned::from(["email".to_owned()]));
        assert!(memo.get(&b).is_some());
        // An equal classification of another allocation is not a hit.
        let copy: Shared = Rc::new((*a).clone());
        assert!(memo.get(&copy).is_none());
    }

    /// A kept answer is looked up only after the statement was read under
    /// the session's settings: a setting that makes SQL unreadable refuses
    /// statements of a shape allowed before.
    #[test]
    fn a_kept_answer_does_not_outlive_a_lexing_hazard() {
        let mut t = tracker(vec![rule(Action::Block { message: None }, &["drop"])]);
        let sql = |n| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {n}");
        assert_eq!(t.query(&sql(1)).0, Decision::Forward);
        assert_eq!(t.query(&sql(2)).0, Decision::Forward);
        t.setting("standard_conforming_strings", "off");
        assert!(matches!(t.query(&sql(3)).0, Decision::Refuse { .. }));
    }

    /// `EXECUTE p` runs whatever `p` holds when it runs: never kept.
    #[test]
    fn an_execute_is_judged_by_what_its_name_holds_now() {
        let mut t = tracker(vec![rule(approve(), &["delete"])]);
        assert_eq!(t.query("PREPARE p AS SELECT 1").0, Decision::Forward);
        assert_eq!(t.query("EXECUTE p").0, Decision::Forward);
        assert_eq!(t.query("EXECUTE p").0, Decision::Forward);
        // PostgreSQL refuses the second PREPARE, but the gateway keeps the
        // stricter of the two.
        let again = t.query("PREPARE p AS DELETE FROM t WHERE a = 1").0;
        assert_eq!(again, Decision::Forward);
        assert!(matches!(t.query("EXECUTE p").0, Decision::Hold { .. }));
    }

    /// A kept answer carries the columns a fresh judgement finds.
    #[test]
    fn a_kept_answer_mentions_what_a_fresh_one_does() {
        let sql = "SELECT email FROM customers WHERE id = 7";
        let drop = || vec![rule(Action::Block { message: None }, &["drop"])];
        let fresh = tracker(drop()).query(sql);
        let mut t = tracker(drop());
        t.query("SELECT email FROM customers WHERE id = 6");
        assert_eq!(t.query(sql), fresh);
        assert!(fresh.1.unwrap().contains("email"));
    }

    #[test]
    fn it_keeps_the_most_recent_few() {
        let mut memo = Allowed::default();
        let all: Vec<Shared> = (0..KEPT + 2).map(|_| Shared::default()).collect();
        for s in &all {
            memo.keep(s.clone(), Mentioned::new());
        }
        assert!(memo.get(&all[0]).is_none() && memo.get(&all[1]).is_none());
        assert!(all[2..].iter().all(|s| memo.get(s).is_some()));
    }
}
