use datafusion::physical_plan::displayable;

use super::*;
use crate::ids::JobId;
use crate::plan::test_plans::partitioned_join_plan;

fn join_stage(
    join_type: JoinType,
    probe_partitions: usize,
) -> (Arc<ShuffleWriterExec>, Vec<Arc<ShuffleWriterExec>>) {
    let plan = partitioned_join_plan(&JobId::parse("job1").unwrap(), join_type, probe_partitions);
    assert_eq!(plan.stages.len(), 3);
    let stages: Vec<_> = plan.stages.into_iter().map(|s| s.plan).collect();
    (Arc::clone(&stages[2]), stages)
}

/// The join stage with its build side (stage 1) broadcast and its probe
/// side (stage 2) read in place.
fn rewrite(
    join: &ShuffleWriterExec,
    stages: &[Arc<ShuffleWriterExec>],
) -> Option<ShuffleWriterExec> {
    let candidate = late_broadcast_candidate(join).unwrap();
    broadcast_build_side(
        join,
        candidate,
        stages[0].input(),
        Arc::clone(stages[1].input()),
    )
    .unwrap()
}

#[test]
fn an_inner_or_right_join_of_two_hash_reads_is_a_candidate() {
    for join_type in [
        JoinType::Inner,
        JoinType::Right,
        JoinType::RightSemi,
        JoinType::RightAnti,
    ] {
        let (join, _) = join_stage(join_type, 2);
        assert_eq!(
            late_broadcast_candidate(&join),
            Some(LateBroadcast {
                build: StageId(1),
                probe: StageId(2)
            }),
            "{join_type}"
        );
    }
}

#[test]
fn a_join_that_emits_build_rows_of_its_own_is_not_a_candidate() {
    for join_type in [
        JoinType::Left,
        JoinType::Full,
        JoinType::LeftSemi,
        JoinType::LeftAnti,
    ] {
        let (join, _) = join_stage(join_type, 2);
        assert_eq!(late_broadcast_candidate(&join), None, "{join_type}");
    }
}

#[test]
fn stages_without_a_partitioned_join_are_not_candidates() {
    let (_, stages) = join_stage(JoinType::Inner, 2);
    assert_eq!(late_broadcast_candidate(&stages[0]), None);
    assert_eq!(late_broadcast_candidate(&stages[1]), None);
}

#[test]
fn the_rewritten_stage_collects_the_build_side_and_runs_the_probe_plan_itself() {
    let (join, stages) = join_stage(JoinType::Inner, 2);
    let rewritten = rewrite(&join, &stages).expect("same task count");
    let text = displayable(&rewritten as &dyn ExecutionPlan)
        .indent(false)
        .to_string();
    assert!(text.contains("mode=CollectLeft"), "{text}");
    assert!(
        text.contains("UnresolvedShuffleExec: stage=1, mode=Coalesce, partitions=1"),
        "{text}"
    );
    assert!(!text.contains("stage=2"), "{text}");
    assert!(text.contains("EmptyExec"), "{text}");
    assert_eq!(rewritten.input_partition_count(), 2);
    assert_eq!(rewritten.stage_id(), join.stage_id());
    assert_eq!(rewritten.schema(), join.schema());
}

#[test]
fn a_stage_writing_one_output_per_task_keeps_its_task_count_or_its_join() {
    let (join, stages) = join_stage(JoinType::Inner, 3);
    assert!(join.shuffle_partitioning().is_none());
    let rewritten = rewrite(&join, &stages);
    assert!(
        rewritten.is_none(),
        "3 probe partitions would make 3 tasks instead of 2"
    );
}
