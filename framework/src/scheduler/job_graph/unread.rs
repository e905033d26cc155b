//! Which stages' output no stage will read again, so that executors can
//! free what they hold of it in memory.

use super::{JobGraph, StageId};

impl JobGraph {
    /// Stages whose output no stage will read any more (every stage reading
    /// it has completed), each reported once: executors may free what they
    /// hold of it in memory. The final stage's output is the result and is
    /// never reported.
    pub fn take_unread_outputs(&mut self) -> Vec<StageId> {
        // Output becomes unread only when a stage reading it completes.
        if !std::mem::take(&mut self.stage_completed) {
            return Vec::new();
        }
        let unread: Vec<StageId> = self
            .stages
            .values()
            .filter(|s| {
                !self.unread_reported.contains(&s.id) && s.is_complete() && !self.output_needed(s)
            })
            .map(|s| s.id)
            .collect();
        self.unread_reported.extend(unread.iter().copied());
        unread
    }
}
