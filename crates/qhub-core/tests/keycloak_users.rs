//! `qhub users`' library ([`qhub_core::keycloak::users`]) against the admin-API emulator, over
//! loopback HTTP: the realm a deploy configures, then users added, listed, changed, removed;
//! the emulator refuses what Keycloak refuses.

use std::time::Duration;

use qhub_core::config::ProviderKind;
use qhub_core::config::init::{InitOptions, render};
use qhub_core::keycloak::users::{NewUser, Outcome, UserError, Users};
use qhub_core::keycloak::*;
use qhub_sandbox::keycloak_api::{KeycloakApi, KeycloakApiOptions, KeycloakServer};

const PASSWORD: &str = "emulator-admin-pw";

/// The emulator with the realm, groups and clients a deploy of `qhub init aws`'s config makes.
async fn deployed() -> (KeycloakApi, KeycloakServer, AdminClient) {
    let api = KeycloakApi::new(KeycloakApiOptions {
        admin_username: ADMIN_USER.into(),
        admin_password: PASSWORD.into(),
        ..KeycloakApiOptions::default()
    });
    let server = api.serve().await.expect("serve the emulator");
    let config = render(&InitOptions::new(
        ProviderKind::Aws,
        "demo",
        "demo.example.com",
        PASSWORD,
    ))
    .expect("init config");
    let client = AdminClient::new(&server.url(), AdminCredentials::new(ADMIN_USER, PASSWORD))
        .unwrap()
        .with_retry(qhub_core::retry::RetryPolicy::uniform(
            qhub_core::retry::Budget::attempts(
                1,
                Duration::from_millis(1),
                Duration::from_millis(1),
            ),
        ));
    let kc = Keycloak::new(client.clone(), desired::test_secrets(&config));
    let plan = kc.plan(&config).await.unwrap();
    kc.apply_plan(&plan).await.unwrap();
    (api, server, client)
}

fn alice(groups: &[&str]) -> NewUser {
    NewUser {
        username: "Alice".into(),
        email: Some("alice@example.com".into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        password: Some(SecretString::new("first-password-1")),
    }
}

#[tokio::test]
async fn users_are_added_listed_changed_and_removed() {
    let (api, _server, client) = deployed().await;
    let users = Users::new(&client, REALM);
    assert!(users.list().await.unwrap().is_empty());

    // Created in lower case, with its password, in the group asked for and the default ones.
    assert_eq!(
        users.add(&alice(&["admin"])).await.unwrap(),
        Outcome::Created
    );
    assert!(api.password_matches(REALM, "alice", "first-password-1"));
    let list = users.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].username, "alice");
    assert_eq!(list[0].email.as_deref(), Some("alice@example.com"));
    assert_eq!(
        list[0].groups,
        ["admin", "analyst", "users"],
        "analyst and users are default groups"
    );

    // The same add again: nothing differs, nothing is sent.
    let mutating = api.counts().mutating;
    let same = NewUser {
        password: None,
        ..alice(&["admin"])
    };
    assert_eq!(users.add(&same).await.unwrap(), Outcome::Unchanged);
    assert_eq!(api.counts().mutating, mutating);
    // Something differs: an error naming it and the fix.
    let other = NewUser {
        email: Some("alice@elsewhere.org".into()),
        password: None,
        ..alice(&[])
    };
    let err = users.add(&other).await.unwrap_err().to_string();
    assert!(
        err.contains("user `alice` already exists")
            && err.contains("e-mail alice@example.com (not alice@elsewhere.org)")
            && err.contains("groups admin, analyst, users (not analyst, users)")
            && err.contains("qhub users remove alice"),
        "{err}"
    );
    assert!(matches!(
        users.add(&alice(&["admin"])).await,
        Err(UserError::Differs { .. })
    ));

    // An unknown group lists the existing ones; nothing is created.
    let err = users
        .add(&NewUser {
            username: "bob".into(),
            groups: vec!["admins".into()],
            ..NewUser::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "group `admins` does not exist in realm qhub; the groups are: admin, analyst, developer, users"
        ),
        "{err}"
    );
    assert_eq!(users.list().await.unwrap().len(), 1);

    // Memberships: idempotent both ways.
    assert_eq!(
        users.add_to_group("alice", "developer").await.unwrap(),
        Outcome::Added
    );
    assert_eq!(
        users.add_to_group("ALICE", "developer").await.unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(
        users.remove_from_group("alice", "admin").await.unwrap(),
        Outcome::Left
    );
    assert_eq!(
        users.remove_from_group("alice", "admin").await.unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(
        users.get("alice").await.unwrap().groups,
        ["analyst", "developer", "users"]
    );
    let err = users
        .add_to_group("alice", "nope")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("group `nope` does not exist"), "{err}");

    // Password.
    let new = SecretString::new("second-password-2");
    assert_eq!(
        users.set_password("alice", &new, false).await.unwrap(),
        Outcome::PasswordSet
    );
    assert!(api.password_matches(REALM, "alice", "second-password-2"));
    assert!(!api.password_matches(REALM, "alice", "first-password-1"));

    // Unknown users name the fix.
    for err in [
        users.remove("carol").await.unwrap_err(),
        users.set_password("carol", &new, false).await.unwrap_err(),
        users.add_to_group("carol", "admin").await.unwrap_err(),
    ] {
        assert!(
            err.to_string()
                .contains("user `carol` does not exist in realm qhub: `qhub users list`"),
            "{err}"
        );
    }
    assert_eq!(users.remove("alice").await.unwrap(), Outcome::Removed);
    assert!(users.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_emulator_refuses_what_keycloak_refuses() {
    let (_api, _server, client) = deployed().await;
    let user = |name: &str, email: Option<&str>| client::UserRepresentation {
        username: name.into(),
        email: email.map(str::to_string),
        ..Default::default()
    };
    let id = client
        .create_user(REALM, &user("dora", Some("d@example.com")))
        .await
        .unwrap();
    // Duplicate user name (in any case) or e-mail: 409.
    let err = client
        .create_user(REALM, &user("DORA", None))
        .await
        .unwrap_err();
    assert!(
        err.is_conflict() && err.to_string().contains("User exists with same username"),
        "{err}"
    );
    let err = client
        .create_user(REALM, &user("eve", Some("d@example.com")))
        .await
        .unwrap_err();
    assert!(
        err.is_conflict() && err.to_string().contains("User exists with same email"),
        "{err}"
    );
    // An unknown group or user: 404.
    let err = client
        .add_user_to_group(
            REALM,
            &id,
            "dora",
            "00000000-0000-4000-a000-000000000000",
            "x",
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = client
        .delete_user(REALM, "00000000-0000-4000-a000-000000000000", "x")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // A blank password: 400.
    let blank = client::CredentialRepresentation::password(SecretString::new(" "), false);
    let err = client
        .reset_password(REALM, &id, "dora", &blank)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    // An unknown realm: the users library says to deploy.
    let err = Users::new(&client, "other").list().await.unwrap_err();
    assert!(
        err.to_string().contains("realm other does not exist yet"),
        "{err}"
    );
    // A deleted group leaves no membership behind.
    let groups = client.groups(REALM).await.unwrap();
    let dev = groups.iter().find(|g| g.name == "developer").unwrap();
    let dev_id = dev.id.clone().unwrap();
    client
        .add_user_to_group(REALM, &id, "dora", &dev_id, "developer")
        .await
        .unwrap();
    client
        .delete_group(REALM, &dev_id, "developer")
        .await
        .unwrap();
    let names: Vec<String> = client
        .user_groups(REALM, &id, "dora")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["analyst", "users"]);
}
