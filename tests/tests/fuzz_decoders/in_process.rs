//! In process: plan codecs, schemas, Flight tickets and error details.

use super::*;

pub(crate) async fn fuzz_plan_codecs(campaign: &mut Campaign) {
    let executor = ExecutorAddress {
        id: ExecutorId::new("exec-0123456789ab"),
        host: "127.0.0.1".into(),
        port: 50051,
    };
    let fixtures = PlanFixtures::build(&executor).await;
    let logical_plans: Vec<DecoderSeed> = fixtures
        .logical_plans()
        .into_iter()
        .map(DecoderSeed::valid)
        .collect();

    let context = fixtures.task_context();
    fuzz_in_process(
        campaign,
        "decode_client_plan (scheduler)",
        logical_plans.clone(),
        parses_as::<LogicalPlanNode>,
        move |bytes| {
            let context = Arc::clone(&context);
            // The scheduler plans on a large stack; so does this.
            LargeStack::new(async move {
                Verdict::of(
                    decode_client_plan(&bytes, &context).map_err(BallistaError::from_datafusion),
                )
            })
        },
    )
    .await;

    let planner = Arc::clone(&fixtures.planner);
    let template = fixtures.queries[0].request.clone();
    fuzz_in_process(
        campaign,
        "JobPlanner::plan of a client plan (scheduler)",
        logical_plans,
        parses_as::<LogicalPlanNode>,
        move |bytes| {
            let planner = Arc::clone(&planner);
            let mut request = template.clone();
            request.query = Some(Query::LogicalPlan(bytes));
            LargeStack::new(async move {
                let settings = planner.job_settings(&request, EXECUTOR_SLOTS);
                let admin = Identity::cluster_admin();
                Verdict::of(
                    planner
                        .plan(&JobId::generate(), &request, &settings, &admin)
                        .await,
                )
            })
        },
    )
    .await;

    let stage_plans = fixtures
        .stage_plans()
        .into_iter()
        .map(DecoderSeed::valid)
        .collect();
    let context = fixtures.task_context();
    fuzz_in_process(
        campaign,
        "decode_stage_plan (executor)",
        stage_plans,
        parses_as::<PhysicalPlanNode>,
        move |bytes| {
            let context = Arc::clone(&context);
            async move { Verdict::of(decode_stage_plan(&bytes, &context)) }
        },
    )
    .await;
}

#[test]
pub(crate) fn plan_codecs_survive_mutated_plans() {
    let mut campaign = Campaign::start("plan codecs");
    let runtime = runtime();
    runtime.block_on(Box::pin(fuzz_plan_codecs(&mut campaign)));
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}

/// Schemas of the kinds plans and results carry.
pub(crate) fn seed_schemas() -> Vec<Schema> {
    let point = Fields::from(vec![
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
    ]);
    let tags = Arc::new(Field::new("item", DataType::Utf8, true));
    let city = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    vec![
        Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
        ]),
        Schema::new(vec![
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("price", DataType::Decimal128(15, 2), true),
            Field::new("note", DataType::Utf8View, true),
            Field::new("raw", DataType::Binary, true),
        ]),
        Schema::new(vec![
            Field::new("tags", DataType::List(tags), true),
            Field::new("point", DataType::Struct(point), true),
            Field::new("city", city, true),
        ]),
        Schema::new_with_metadata(
            vec![Field::new("n", DataType::UInt32, false)],
            HashMap::from([("origin".to_string(), "fuzz".to_string())]),
        ),
    ]
}

pub(crate) fn parses_as_ipc_message(bytes: &[u8]) -> bool {
    arrow::ipc::root_as_message(bytes).is_ok()
}

#[test]
pub(crate) fn schemas_survive_mutation() {
    let mut campaign = Campaign::start("schemas");
    let runtime = runtime();
    runtime.block_on(async {
        let seeds = seed_schemas()
            .iter()
            .map(|schema| DecoderSeed::valid(encode_schema(schema)))
            .collect();
        fuzz_in_process(
            &mut campaign,
            "decode_schema (plan nodes, job results, tables)",
            seeds,
            parses_as_ipc_message,
            |bytes| async move { Verdict::of(decode_schema(&bytes)) },
        )
        .await;
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}

/// An executor's shuffle directory: two partition files of a job, a file
/// of an attempt in progress, a file of another job, and a link out.
pub(crate) struct TicketFixture {
    pub(crate) _root: tempfile::TempDir,
    pub(crate) work_dir: PathBuf,
    pub(crate) job_id: JobId,
    pub(crate) other_job: JobId,
}

impl TicketFixture {
    pub(crate) fn create() -> Self {
        let root = tempfile::tempdir().expect("a temporary directory");
        let base = root.path().canonicalize().expect("a canonical path");
        let work_dir = base.join("shuffle");
        let outside = base.join("outside");
        let job_id = JobId::parse("fuzzjob-tickets-1").expect("a valid job id");
        let other_job = JobId::parse("fuzzjob-tickets-2").expect("a valid job id");
        for file in [
            format!("{job_id}/s1/m0-a0-p0.arrow"),
            format!("{job_id}/s2/m1-a0-p3.arrow"),
            format!("{job_id}/s1/.m0-a1-p0.arrow.tmp"),
            format!("{other_job}/s1/m0-a0-p0.arrow"),
        ] {
            let path = work_dir.join(file);
            std::fs::create_dir_all(path.parent().expect("a stage directory"))
                .expect("create the stage directory");
            std::fs::write(&path, b"ARROW1").expect("write a partition file");
        }
        std::fs::create_dir_all(&outside).expect("create a directory outside");
        std::fs::write(outside.join("secret"), b"secret").expect("write a file outside");
        std::os::unix::fs::symlink(&outside, work_dir.join(format!("{job_id}/s1/escape")))
            .expect("a symbolic link out of the work directory");
        Self {
            _root: root,
            work_dir,
            job_id,
            other_job,
        }
    }

    pub(crate) fn seeds(&self) -> Vec<DecoderSeed> {
        let ticket = |job_id: &str, path: String| {
            proto::FetchPartitionTicket {
                job_id: job_id.into(),
                path,
                ..Default::default()
            }
            .encode_to_vec()
        };
        let (job, other) = (self.job_id.as_str(), self.other_job.as_str());
        vec![
            DecoderSeed::valid(ticket(job, format!("{job}/s1/m0-a0-p0.arrow"))),
            DecoderSeed::valid(ticket(job, format!("{job}/s2/m1-a0-p3.arrow"))),
            DecoderSeed::invalid(ticket(job, format!("{job}/s1/.m0-a1-p0.arrow.tmp"))),
            DecoderSeed::invalid(ticket(job, format!("{job}/../{other}/s1/m0-a0-p0.arrow"))),
            DecoderSeed::invalid(ticket(job, format!("{other}/s1/m0-a0-p0.arrow"))),
            DecoderSeed::invalid(ticket(job, format!("{job}/s1/escape/secret"))),
            DecoderSeed::invalid(ticket(job, format!("{job}/s1/missing.arrow"))),
            DecoderSeed::invalid(ticket(job, "/etc/passwd".into())),
            DecoderSeed::invalid(ticket("..", "../x".into())),
        ]
    }
}

/// A ticket the executor would serve must name a plain file inside its
/// job's directory.
pub(crate) fn ticket_verdict(work_dir: &Path, bytes: &[u8]) -> Verdict {
    let ticket = match decode_ticket(bytes) {
        Ok(ticket) => ticket,
        Err(e) => return Verdict::refused(&e),
    };
    let path = match resolve_ticket_path(work_dir, &ticket) {
        Ok(path) => path,
        Err(e) => return Verdict::refused(&e),
    };
    let job_dir = work_dir.join(&ticket.job_id);
    let hidden = match path.strip_prefix(work_dir) {
        Ok(inside) => inside
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.')),
        Err(_) => true,
    };
    if path.starts_with(&job_dir) && !hidden {
        Verdict::accepted()
    } else {
        Verdict::violated(format!(
            "ticket {ticket:?} resolved to {}, not a plain file under {}",
            path.display(),
            job_dir.display()
        ))
    }
}

#[test]
pub(crate) fn flight_tickets_resolve_only_inside_their_job_directory() {
    let mut campaign = Campaign::start("flight tickets");
    let fixture = TicketFixture::create();
    let runtime = runtime();
    runtime.block_on(async {
        let work_dir = fixture.work_dir.clone();
        fuzz_in_process(
            &mut campaign,
            "decode_ticket + resolve_ticket_path (executor)",
            fixture.seeds(),
            parses_as::<proto::FetchPartitionTicket>,
            move |bytes| {
                let work_dir = work_dir.clone();
                async move { ticket_verdict(&work_dir, &bytes) }
            },
        )
        .await;
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}

/// Errors of the kinds services send, as the `google.rpc.Status` details
/// holding their `ErrorInfo`.
pub(crate) fn error_seeds() -> Vec<DecoderSeed> {
    let errors = [
        BallistaError::InvalidInput("invalid job id \"..\"".into()),
        BallistaError::FetchFailed {
            executor_id: "exec-0123456789ab".into(),
            map_stage_id: 2,
            map_partition: 7,
            message: "connection reset by peer".into(),
        },
        BallistaError::ExecutorLost {
            executor_id: "exec-0123456789ab".into(),
            message: "no heartbeat for 30s".into(),
        },
        BallistaError::ResourcesExhausted("the job's memory quota is used up".into()),
        BallistaError::DataFusion(DataFusionError::Execution("Divide by zero error".into())),
        BallistaError::DataFusion(DataFusionError::Context(
            "while planning".into(),
            Box::new(DataFusionError::Plan("table 't' not found".into())),
        )),
    ];
    errors
        .iter()
        .map(|error| {
            DecoderSeed::valid(ballista::error::status_details(
                Code::Aborted,
                "fuzzed status",
                &error.to_proto(),
            ))
        })
        .collect()
}

/// A status whose details hold an `ErrorInfo` of a known kind becomes an
/// error of that kind (retries depend on it).
pub(crate) fn error_verdict(bytes: Vec<u8>) -> Verdict {
    let info = ballista::error::error_info_of_details(&bytes);
    let status = Status::with_details(Code::Aborted, "fuzzed status", Bytes::from(bytes));
    let error = BallistaError::from(status);
    let retried = if error.is_retryable() {
        ", retried"
    } else {
        ""
    };
    let outcome = format!("{:?}{retried}", error.kind());
    let known_kind = info.filter(|info| {
        info.kind != proto::ErrorKind::Unspecified as i32
            && proto::ErrorKind::try_from(info.kind).is_ok()
    });
    match known_kind {
        None => Verdict {
            outcome,
            accepted: false,
            violation: None,
        },
        Some(info) if error.kind() as i32 == info.kind => Verdict {
            outcome,
            accepted: true,
            violation: None,
        },
        Some(info) => Verdict::violated(format!(
            "details of kind {:?} became an error of kind {outcome}",
            proto::ErrorKind::try_from(info.kind)
        )),
    }
}

#[test]
pub(crate) fn error_details_keep_their_kind() {
    let mut campaign = Campaign::start("error details");
    let runtime = runtime();
    runtime.block_on(fuzz_in_process(
        &mut campaign,
        "ErrorInfo in gRPC status details (clients, scheduler)",
        error_seeds(),
        parses_as::<proto::ErrorInfo>,
        |bytes| async move { error_verdict(bytes) },
    ));
    runtime.shutdown_timeout(Duration::from_secs(10));
    campaign.finish();
}
