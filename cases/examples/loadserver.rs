//! A self-stopping case API server for load measurements on loopback.
//!
//! `cargo run -p fengqiao-cases --example loadserver -- <data_dir> <port> <seconds> [disputes]`
//! opens (or creates) the SQLite store in `data_dir`, loads the demo district plus
//! `disputes` extra registered disputes on first use, prints a bearer token of the
//! demo judge and one dispute id, serves `/api` on 127.0.0.1:`port`, and exits after
//! `seconds`. Used by `cases/bench/load.sh`.

use fengqiao_cases::*;
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "target/loaddata".into());
    let port: u16 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(18080);
    let secs: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
        .min(900);
    let extra: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let cfg = CasesConfig {
        data_dir: dir.into(),
        ..CasesConfig::default()
    };
    let store = connect(&cfg).await?;
    if store.has_no_users().await? {
        load_demo_data(&store).await?;
        create_user(
            &store,
            "loadjudge",
            "Load Judge",
            StaffRole::Judge,
            None,
            "load-test-password",
        )
        .await?;
        let body: fengqiao_cases::model::NewDispute = serde_json::from_value(serde_json::json!({
            "category": "debt", "description": "负载测试纠纷 load test dispute with a description of moderate length.",
            "amount_fen": 500000,
            "parties": [{"kind": "applicant", "name": "甲", "id_number": "330681199001011237"}, {"kind": "respondent", "name": "乙"}]
        }))?;
        for _ in 0..extra {
            store
                .register_dispute(&Actor::system(), None, &body)
                .await?;
        }
    }
    let (token, _) = store
        .login("loadjudge", "load-test-password", "127.0.0.1")
        .await?;
    let id: i64 = sqlx::query_scalar("SELECT MAX(id) FROM disputes")
        .fetch_one(store.pool())
        .await?;
    println!("TOKEN={token}");
    println!("DISPUTE={id}");
    let app = router(CasesState::new(store));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    );
    tokio::select! {
        r = server => r?,
        _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
    }
    Ok(())
}
