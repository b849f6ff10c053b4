//! A demo district: organisations of every kind, a roster, one login per role and
//! disputes in every state of the lifecycle.

use crate::db::{Actor, Store};
use crate::error::CasesError;
use crate::model::*;
use crate::service::*;
use serde::Serialize;

/// A demo login, printed once by `fengqiao demo-data`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoLogin {
    /// User name.
    pub username: String,
    /// Random password (shown once).
    pub password: String,
    /// Role.
    pub role: StaffRole,
}

fn password() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>())
}

impl Store {
    /// True when no staff account exists yet (first start).
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn has_no_users(&self) -> Result<bool, CasesError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.pool())
            .await?;
        Ok(n == 0)
    }
}

/// Loads the demo district and returns its logins (random passwords).
///
/// # Errors
/// 409 when demo data (the demo organisations) is already there; database errors.
pub async fn load_demo_data(store: &Store) -> Result<Vec<DemoLogin>, CasesError> {
    let sys = Actor::system();
    let kinds = [
        ("枫桥镇人民调解委员会", "peoples_committee", "枫桥镇", true),
        ("诸暨市物业纠纷调解中心", "industry", "暨阳街道", true),
        ("诸暨市人民法院诉前调解中心", "court", "浣东街道", true),
        ("诸暨市律师调解工作室", "lawyer", "陶朱街道", false),
    ];
    let mut orgs = Vec::new();
    for (name, kind, street, online) in kinds {
        let o = store
            .create_org(
                &sys,
                &NewOrganisation {
                    name: name.into(),
                    kind: kind.into(),
                    district: "诸暨市".into(),
                    street: Some(street.into()),
                    online,
                },
            )
            .await?;
        orgs.push(o);
    }
    let mut logins = Vec::new();
    let mut user = |username: &str, display: &str, role: StaffRole, org: Option<i64>| {
        let pw = password();
        logins.push(DemoLogin {
            username: username.into(),
            password: pw.clone(),
            role,
        });
        NewUser {
            username: username.into(),
            display_name: display.into(),
            role: role.as_str().into(),
            org_id: org,
            password: pw,
            specialties: None,
        }
    };
    let specs = vec![
        user("admin", "系统管理员", StaffRole::Admin, None),
        user("triage", "综治中心分流员", StaffRole::Triage, None),
        user(
            "orgadmin",
            "枫桥调委会主任",
            StaffRole::OrgAdmin,
            Some(orgs[0].id),
        ),
        user(
            "mediator",
            "王调解员",
            StaffRole::Mediator,
            Some(orgs[0].id),
        ),
        user("judge", "李法官", StaffRole::Judge, None),
        user("clerk", "赵书记员", StaffRole::Clerk, None),
    ];
    let mut users = Vec::new();
    for s in &specs {
        users.push(store.create_user(&sys, s).await?);
    }
    let mediator_id = users[3]
        .mediator_id
        .ok_or_else(|| CasesError::Internal("mediator without roster entry".into()))?;
    store
        .create_mediator(
            &sys,
            &NewMediator {
                org_id: orgs[1].id,
                name: "陈调解员".into(),
                specialties: Some("物业,相邻".into()),
            },
        )
        .await?;
    let actor = |i: usize| Actor {
        name: users[i].username.clone(),
        role: users[i].role.as_str().into(),
        addr: String::new(),
    };
    let (triage, orgadmin, med, judge) = (actor(1), actor(2), actor(3), actor(4));
    let new = |cat: &str, desc: &str, a: &str, r: &str| NewDispute {
        category: cat.into(),
        description: desc.into(),
        amount_fen: Some(1_250_000),
        is_public: false,
        parties: vec![
            NewParty {
                kind: "applicant".into(),
                name: a.into(),
                id_number: Some("330681199001011237".into()),
                phone: Some("13800000001".into()),
                represents: None,
            },
            NewParty {
                kind: "respondent".into(),
                name: r.into(),
                id_number: Some("330681198502023450".into()),
                phone: Some("13800000002".into()),
                represents: None,
            },
        ],
    };
    // How far along the lifecycle each demo dispute goes.
    let plan: [(&str, u8); 11] = [
        ("registered", 0),
        ("triaged", 1),
        ("accepted", 2),
        ("in_mediation", 3),
        ("agreement_reached", 4),
        ("failed", 10),
        ("withdrawn", 11),
        ("confirmation_applied", 5),
        ("confirmation_accepted", 6),
        ("confirmed", 7),
        ("rejected", 8),
    ];
    for (i, (label, depth)) in plan.iter().enumerate() {
        let n = new(
            "neighbour",
            &format!("演示纠纷 {}：相邻通行纠纷（{label}）", i + 1),
            "张三",
            "李四",
        );
        let mut d = store
            .register_dispute(&triage, Some(users[1].id), &n)
            .await?;
        if *depth == 11 {
            store.withdraw(&triage, &d, "申请人撤回").await?;
            continue;
        }
        if *depth >= 1 {
            d = store.triage(&triage, &d, orgs[0].id).await?;
        }
        if *depth >= 2 {
            d = store.accept(&orgadmin, &d, mediator_id).await?;
        }
        if *depth >= 3 {
            d = store.start(&med, &d).await?;
        }
        if *depth == 10 {
            store.fail(&med, &d, "双方分歧过大").await?;
            continue;
        }
        if *depth >= 4 {
            d = store
                .agree(
                    &med,
                    &d,
                    &AgreementUpload {
                        kind: "text".into(),
                        filename: "agreement.txt".into(),
                        text: Some("双方同意……".into()),
                        content_base64: None,
                    },
                )
                .await?;
        }
        if *depth >= 5 {
            let detail = store.dispute_detail(d.id).await?;
            for p in detail.parties.iter().filter(|p| p.kind != "agent") {
                store.sign(&med, &d, p.id, "id_card_in_video").await?;
            }
            d = store.apply_confirmation(&med, &d).await?;
        }
        if *depth >= 6 {
            d = store.accept_confirmation(&judge, &d).await?;
        }
        if *depth == 7 {
            store
                .rule(&judge, &d, "confirmed", "协议合法有效", false)
                .await?;
        }
        if *depth == 8 {
            store
                .rule(&judge, &d, "rejected", "协议内容违反法律规定", false)
                .await?;
        }
    }
    store
        .add_training(
            &sys,
            &NewTraining {
                held_on: "2026-03-15".into(),
                topic: "在线调解平台使用培训".into(),
                organiser: "司法所".into(),
                attendance: 25,
                org_id: None,
            },
        )
        .await?;
    Ok(logins)
}
