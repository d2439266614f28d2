//! Proptest strategies for every message.
#![allow(dead_code)]

use ferrojob_transport::message::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn s() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 :./{}\"é🚀-]{0,24}"
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..48)
}

fn nonce() -> impl Strategy<Value = [u8; NONCE_LEN]> {
    any::<[u8; NONCE_LEN]>()
}

fn execute_type() -> impl Strategy<Value = ExecuteType> {
    prop_oneof![
        Just(ExecuteType::Standalone),
        Just(ExecuteType::Broadcast),
        Just(ExecuteType::Map),
        Just(ExecuteType::MapReduce)
    ]
}

fn time_expression_type() -> impl Strategy<Value = TimeExpressionType> {
    prop_oneof![
        Just(TimeExpressionType::Api),
        Just(TimeExpressionType::Cron),
        Just(TimeExpressionType::FixedRate),
        Just(TimeExpressionType::FixedDelay),
        Just(TimeExpressionType::DailyTimeInterval),
        Just(TimeExpressionType::Workflow)
    ]
}

fn instance_status() -> impl Strategy<Value = InstanceStatus> {
    prop_oneof![
        Just(InstanceStatus::WaitingDispatch),
        Just(InstanceStatus::WaitingWorkerReceive),
        Just(InstanceStatus::Running),
        Just(InstanceStatus::Failed),
        Just(InstanceStatus::Succeed),
        Just(InstanceStatus::Canceled),
        Just(InstanceStatus::Stopped)
    ]
}

fn task_status() -> impl Strategy<Value = TaskStatus> {
    prop_oneof![
        Just(TaskStatus::WaitingDispatch),
        Just(TaskStatus::DispatchedUnacknowledged),
        Just(TaskStatus::WorkerReceived),
        Just(TaskStatus::WorkerProcessing),
        Just(TaskStatus::WorkerProcessFailed),
        Just(TaskStatus::WorkerProcessSucceed)
    ]
}

fn log_level() -> impl Strategy<Value = LogLevel> {
    prop_oneof![
        Just(LogLevel::Debug),
        Just(LogLevel::Info),
        Just(LogLevel::Warn),
        Just(LogLevel::Error)
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Malformed),
        Just(ErrorCode::AuthFailed),
        Just(ErrorCode::UnsupportedVersion),
        Just(ErrorCode::UnexpectedMessage),
        Just(ErrorCode::NotFound),
        Just(ErrorCode::Overloaded),
        Just(ErrorCode::Internal),
        Just(ErrorCode::ShuttingDown),
        Just(ErrorCode::IdleTimeout),
        Just(ErrorCode::SlowPeer),
        Just(ErrorCode::FrameTooLarge),
        Just(ErrorCode::NotOwner)
    ]
}

fn context() -> impl Strategy<Value = Vec<ContextEntry>> {
    vec(
        (s(), s()).prop_map(|(key, value)| ContextEntry { key, value }),
        0..4,
    )
}

prop_compose! {
    pub fn schedule_job()(
        ids in any::<(u64, u64, u64)>(),
        wf in option::of(any::<u64>()),
        execute_type in execute_type(),
        builtin in any::<bool>(),
        texts in (s(), s(), s(), s()),
        nums in any::<(u64, u32, u32, u32, u32)>(),
        tet in time_expression_type(),
        workers in vec(s(), 0..5),
        log in (prop_oneof![Just(LogType::Online), Just(LogType::Local), Just(LogType::Stdout), Just(LogType::Null)], log_level()),
        alarm in any::<(u32, u32, u32)>(),
        t in any::<i64>(),
        key in s(),
        trigger in any::<i64>(),
    ) -> ScheduleJob {
        ScheduleJob {
            app_id: ids.0, job_id: ids.1, instance_id: ids.2, workflow_instance_id: wf,
            execute_type,
            processor_type: if builtin { ProcessorType::BuiltIn } else { ProcessorType::External },
            processor_info: texts.0, job_params: texts.1, instance_params: texts.2,
            instance_timeout_ms: nums.0, concurrency: nums.1, task_retry_num: nums.2,
            time_expression_type: tet, time_expression: texts.3, max_instance_num: nums.3,
            all_worker_addresses: workers, max_worker_count: nums.4,
            log_config: LogConfig { log_type: log.0, level: log.1 },
            alarm_config: AlarmConfig { threshold: alarm.0, statistic_window_s: alarm.1, silence_window_s: alarm.2 },
            dispatch_time_ms: t,
            report_seq_base: 0,
            workflow_context: String::new(),
            trigger_key: key,
            trigger_time_ms: trigger,
            epoch: ids.2.rotate_left(7),
        }
    }
}

prop_compose! {
    pub fn report_instance_status()(
        ids in any::<(u64, u64, u64)>(), wf in option::of(any::<u64>()), status in instance_status(),
        result in option::of(s()), counts in any::<(u64, u64, u64)>(), times in any::<(i64, i64, u64)>(),
        end in option::of(any::<i64>()), source in s(), ctx in context(), alert in any::<bool>(),
    ) -> ReportInstanceStatus {
        ReportInstanceStatus {
            app_id: ids.0, job_id: ids.1, instance_id: ids.2, workflow_instance_id: wf, status, result,
            total_tasks: counts.0, succeeded_tasks: counts.1, failed_tasks: counts.2,
            start_time_ms: times.0, end_time_ms: end, report_time_ms: times.1, report_seq: times.2,
            source_address: source, appended_workflow_context: ctx, alert,
        }
    }
}

prop_compose! {
    fn heartbeat()(
        texts in (s(), s(), s()), tag in option::of(s()), app_id in any::<u64>(), t in any::<i64>(),
        overloaded in any::<bool>(), counts in any::<(u32, u32, u32)>(),
        m in (any::<u32>(), -1.0e6f64..1.0e6, any::<(u64, u64, u64, u64)>(), any::<i32>()),
    ) -> WorkerHeartbeat {
        WorkerHeartbeat {
            worker_address: texts.0, app_name: texts.1, app_id, heartbeat_time_ms: t, version: texts.2, tag,
            overloaded, lightweight_task_trackers: counts.0, heavy_task_trackers: counts.1,
            processor_trackers: counts.2,
            metrics: SystemMetrics { cpu_cores: m.0, cpu_load: m.1, memory_used_bytes: m.2.0,
                memory_max_bytes: m.2.1, disk_used_bytes: m.2.2, disk_total_bytes: m.2.3, score: m.3 },
        }
    }
}

/// Any message of any kind.
pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u16>(), nonce(), any::<i64>()).prop_map(|(v, nonce, t)| HandshakeChallenge {
            protocol_version: v,
            nonce,
            server_time_ms: t
        }
        .into()),
        (
            any::<u16>(),
            s(),
            s(),
            vec(s(), 0..4),
            s(),
            nonce(),
            nonce()
        )
            .prop_map(|(v, a, w, tags, cv, n, p)| Handshake {
                protocol_version: v,
                app_name: a,
                worker_address: w,
                tags,
                client_version: cv,
                client_nonce: n,
                proof: p
            }
            .into()),
        (nonce(), any::<u32>(), any::<u32>(), any::<i64>()).prop_map(|(p, h, i, t)| {
            HandshakeAccepted {
                server_proof: p,
                heartbeat_interval_ms: h,
                idle_timeout_ms: i,
                server_time_ms: t,
            }
            .into()
        }),
        any::<i64>().prop_map(|t| Ping { time_ms: t }.into()),
        any::<i64>().prop_map(|t| Pong { time_ms: t }.into()),
        Just(Ack {}.into()),
        (error_code(), s()).prop_map(|(code, message)| ErrorReply { code, message }.into()),
        (error_code(), s()).prop_map(|(code, message)| Close { code, message }.into()),
        heartbeat().prop_map(Message::from),
        schedule_job().prop_map(Message::from),
        any::<(u64, u64)>()
            .prop_map(|(instance_id, epoch)| StopInstance { instance_id, epoch }.into()),
        any::<u64>().prop_map(|instance_id| QueryInstanceStatus { instance_id }.into()),
        (
            any::<u64>(),
            instance_status(),
            option::of(s()),
            any::<(u64, u64, u64, u64)>(),
            any::<i64>()
        )
            .prop_map(|(id, status, result, c, t)| InstanceStatusReply {
                instance_id: id,
                status,
                result,
                total_tasks: c.0,
                succeeded_tasks: c.1,
                failed_tasks: c.2,
                running_tasks: c.3,
                start_time_ms: t
            }
            .into()),
        report_instance_status().prop_map(Message::from),
        (
            s(),
            vec(
                (
                    any::<u64>(),
                    any::<i64>(),
                    log_level(),
                    s(),
                    any::<u32>(),
                    vec((s(), s()), 0..3)
                ),
                0..5
            )
        )
            .prop_map(|(w, e)| LogBatch {
                worker_address: w,
                entries: e
                    .into_iter()
                    .map(
                        |(instance_id, time_ms, level, content, attempt, fields)| LogEntry {
                            instance_id,
                            time_ms,
                            level,
                            content,
                            attempt,
                            fields: fields
                                .into_iter()
                                .map(|(key, value)| LogField { key, value })
                                .collect(),
                        }
                    )
                    .collect(),
            }
            .into()),
        any::<(u64, u64)>()
            .prop_map(|(app_id, job_id)| QueryExecutorCluster { app_id, job_id }.into()),
        vec(s(), 0..5).prop_map(|worker_addresses| ExecutorCluster { worker_addresses }.into()),
        (
            schedule_job(),
            s(),
            any::<u64>(),
            s(),
            s(),
            bytes(),
            any::<u32>()
        )
            .prop_map(|(instance, tt, sub, id, name, content, retry)| StartTask {
                instance,
                task_tracker_address: tt,
                sub_instance_id: sub,
                task_id: id,
                task_name: name,
                task_content: content,
                current_retry: retry
            }
            .into()),
        any::<u64>().prop_map(|instance_id| TrackerStopInstance { instance_id }.into()),
        (
            any::<(u64, u64)>(),
            s(),
            task_status(),
            option::of(s()),
            (any::<i64>(), any::<u32>()),
            context()
        )
            .prop_map(|(ids, task_id, status, result, (t, attempt), ctx)| {
                ReportTaskStatus {
                    instance_id: ids.0,
                    sub_instance_id: ids.1,
                    task_id,
                    status,
                    result,
                    attempt,
                    report_time_ms: t,
                    appended_workflow_context: ctx,
                }
                .into()
            }),
        (
            schedule_job(),
            s(),
            vec((any::<(u64, u32)>(), s(), bytes()), 0..5)
        )
            .prop_map(|(instance, tt, tasks)| StartTasks {
                instance,
                task_tracker_address: tt,
                tasks: tasks
                    .into_iter()
                    .map(|((task_id, dispatch), name, content)| TaskSpec {
                        task_id,
                        dispatch,
                        name,
                        content
                    })
                    .collect()
            }
            .into()),
        (
            any::<(u64, u32)>(),
            s(),
            vec((any::<(u64, u32, bool)>(), s()), 0..5)
        )
            .prop_map(|((id, rem), addr, reports)| ReportTaskStatuses {
                instance_id: id,
                address: addr,
                remaining_tasks: rem,
                reports: reports
                    .into_iter()
                    .map(|((task_id, dispatch, success), result)| TaskOutcome {
                        task_id,
                        dispatch,
                        success,
                        result
                    })
                    .collect()
            }
            .into()),
        (any::<(u64, u64, u32, u32)>(), s(), vec(bytes(), 0..5)).prop_map(
            |((id, parent, dispatch, seq), name, contents)| MapTasks {
                instance_id: id,
                parent_task_id: parent,
                parent_dispatch: dispatch,
                map_seq: seq,
                task_name: name,
                contents
            }
            .into()
        ),
    ]
}
