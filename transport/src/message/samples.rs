//! One realistic example of every message kind, for tests, benchmarks and fuzz seeds.

use super::*;

/// A typical [`ScheduleJob`] (a MAP_REDUCE job on a cron schedule).
pub fn schedule_job() -> ScheduleJob {
    ScheduleJob {
        app_id: 7,
        job_id: 1_042,
        instance_id: 981_234_567_890,
        workflow_instance_id: Some(55_001),
        execute_type: ExecuteType::MapReduce,
        processor_type: ProcessorType::BuiltIn,
        processor_info: "com.example.billing.DailySettlementProcessor".into(),
        job_params: r#"{"region":"eu-west","batch":500}"#.into(),
        instance_params: r#"{"date":"2026-11-23"}"#.into(),
        instance_timeout_ms: 3_600_000,
        concurrency: 8,
        task_retry_num: 2,
        time_expression_type: TimeExpressionType::Cron,
        time_expression: "0 0/5 * * * ? Europe/Paris".into(),
        max_instance_num: 1,
        all_worker_addresses: vec![
            "10.0.3.11:27777".into(),
            "10.0.3.12:27777".into(),
            "10.0.3.13:27777".into(),
        ],
        max_worker_count: 0,
        log_config: LogConfig {
            log_type: LogType::Online,
            level: LogLevel::Info,
        },
        alarm_config: AlarmConfig {
            threshold: 3,
            statistic_window_s: 600,
            silence_window_s: 1800,
        },
        dispatch_time_ms: 1_795_000_000_000,
        report_seq_base: 0,
        workflow_context: String::new(),
        trigger_key: "job-1042-at-1795000000000".into(),
        trigger_time_ms: 1_795_000_000_000,
        epoch: 0,
    }
}

/// A typical [`ReportInstanceStatus`] (a running MAP instance).
pub fn report_instance_status() -> ReportInstanceStatus {
    ReportInstanceStatus {
        app_id: 7,
        job_id: 1_042,
        instance_id: 981_234_567_890,
        workflow_instance_id: Some(55_001),
        status: InstanceStatus::Running,
        result: None,
        total_tasks: 12_000,
        succeeded_tasks: 8_650,
        failed_tasks: 3,
        start_time_ms: 1_795_000_000_120,
        end_time_ms: None,
        report_time_ms: 1_795_000_015_000,
        report_seq: 4,
        source_address: "10.0.3.11:27777".into(),
        appended_workflow_context: vec![ContextEntry {
            key: "settled".into(),
            value: "8650".into(),
        }],
        alert: false,
    }
}

/// One example of every message kind, in [`MessageKind::ALL`] order.
pub fn all() -> Vec<Message> {
    let job = schedule_job();
    vec![
        HandshakeChallenge {
            protocol_version: crate::frame::PROTOCOL_VERSION,
            nonce: [7; NONCE_LEN],
            server_time_ms: 1_795_000_000_000,
        }
        .into(),
        Handshake {
            protocol_version: crate::frame::PROTOCOL_VERSION,
            app_name: "billing".into(),
            worker_address: "10.0.3.11:27777".into(),
            tags: vec!["eu".into(), "gpu".into()],
            client_version: "ferrojob-worker 0.1.0".into(),
            client_nonce: [9; NONCE_LEN],
            proof: [3; NONCE_LEN],
        }
        .into(),
        HandshakeAccepted {
            server_proof: [4; NONCE_LEN],
            heartbeat_interval_ms: 5_000,
            idle_timeout_ms: 20_000,
            server_time_ms: 1_795_000_000_001,
        }
        .into(),
        Ping { time_ms: 12 }.into(),
        Pong { time_ms: 12 }.into(),
        Ack {}.into(),
        ErrorReply {
            code: ErrorCode::NotFound,
            message: "instance 42 unknown".into(),
        }
        .into(),
        Close {
            code: ErrorCode::ShuttingDown,
            message: "server shutting down".into(),
        }
        .into(),
        WorkerHeartbeat {
            worker_address: "10.0.3.11:27777".into(),
            app_name: "billing".into(),
            app_id: 7,
            heartbeat_time_ms: 1_795_000_010_000,
            version: "0.1.0".into(),
            tag: Some("eu".into()),
            overloaded: false,
            lightweight_task_trackers: 3,
            heavy_task_trackers: 1,
            processor_trackers: 4,
            metrics: SystemMetrics {
                cpu_cores: 16,
                cpu_load: 3.25,
                memory_used_bytes: 6 << 30,
                memory_max_bytes: 32 << 30,
                disk_used_bytes: 120 << 30,
                disk_total_bytes: 512 << 30,
                score: 87,
            },
        }
        .into(),
        job.clone().into(),
        StopInstance {
            instance_id: 981_234_567_890,
            epoch: 3,
        }
        .into(),
        QueryInstanceStatus {
            instance_id: 981_234_567_890,
        }
        .into(),
        InstanceStatusReply {
            instance_id: 981_234_567_890,
            status: InstanceStatus::Succeed,
            result: Some("settled 12000 accounts".into()),
            total_tasks: 12_000,
            succeeded_tasks: 12_000,
            failed_tasks: 0,
            running_tasks: 0,
            start_time_ms: 1_795_000_000_120,
        }
        .into(),
        report_instance_status().into(),
        LogBatch {
            worker_address: "10.0.3.11:27777".into(),
            entries: vec![
                LogEntry {
                    instance_id: 981_234_567_890,
                    time_ms: 1_795_000_000_200,
                    level: LogLevel::Info,
                    content: "map stage produced 12000 tasks".into(),
                    attempt: 1,
                    fields: vec![LogField {
                        key: "tasks".into(),
                        value: "12000".into(),
                    }],
                },
                LogEntry {
                    instance_id: 981_234_567_890,
                    time_ms: 1_795_000_000_900,
                    level: LogLevel::Warn,
                    content: "account 77 retried".into(),
                    attempt: 2,
                    fields: Vec::new(),
                },
            ],
        }
        .into(),
        QueryExecutorCluster {
            app_id: 7,
            job_id: 1_042,
        }
        .into(),
        ExecutorCluster {
            worker_addresses: vec!["10.0.3.11:27777".into(), "10.0.3.12:27777".into()],
        }
        .into(),
        StartTask {
            instance: job.clone(),
            task_tracker_address: "10.0.3.11:27777".into(),
            sub_instance_id: 0,
            task_id: "0.1.17".into(),
            task_name: "SETTLE".into(),
            task_content: vec![1, 2, 3, 4, 5],
            current_retry: 0,
        }
        .into(),
        TrackerStopInstance {
            instance_id: 981_234_567_890,
        }
        .into(),
        ReportTaskStatus {
            instance_id: 981_234_567_890,
            sub_instance_id: 0,
            task_id: "0.1.17".into(),
            status: TaskStatus::WorkerProcessSucceed,
            result: Some("ok".into()),
            attempt: 1,
            report_time_ms: 1_795_000_001_000,
            appended_workflow_context: Vec::new(),
        }
        .into(),
        StartTasks {
            instance: job,
            task_tracker_address: "10.0.3.11:27777".into(),
            tasks: (1..4)
                .map(|i| TaskSpec {
                    task_id: i,
                    dispatch: 1,
                    name: "SETTLE".into(),
                    content: i.to_le_bytes().to_vec(),
                })
                .collect(),
        }
        .into(),
        ReportTaskStatuses {
            instance_id: 981_234_567_890,
            address: "10.0.3.12:27777".into(),
            remaining_tasks: 118,
            reports: vec![
                TaskOutcome {
                    task_id: 1,
                    dispatch: 1,
                    success: true,
                    result: "1".into(),
                },
                TaskOutcome {
                    task_id: 2,
                    dispatch: 2,
                    success: false,
                    result: "timeout talking to the bank".into(),
                },
            ],
        }
        .into(),
        MapTasks {
            instance_id: 981_234_567_890,
            parent_task_id: 0,
            parent_dispatch: 1,
            map_seq: 0,
            task_name: "SETTLE".into(),
            contents: (0u8..3).map(|i| vec![i; 4]).collect(),
        }
        .into(),
    ]
}
