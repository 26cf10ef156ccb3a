//! An imported OCI image's run settings applied to each command, the way container runtimes
//! apply them: the image's `Env` under the caller's variables, its `WorkingDir` unless the
//! caller named one, its `User` (root when it names none: the image's own accounts, since
//! airlock's `agent` is not in it), and `Entrypoint` + `Cmd` when no command is given.

use airlock_image::debian::manifest::OciRunConfig;
use airlock_proto::ExecRequest;

/// Applies `config` to `req`; `cwd_given` says whether the caller chose the directory.
pub fn apply_image_config(req: &mut ExecRequest, config: &OciRunConfig, cwd_given: bool) {
    let mut env: Vec<(String, String)> = config
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| !k.is_empty() && !req.env.iter().any(|(have, _)| have == k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.append(&mut req.env);
    req.env = env;
    if !cwd_given && let Some(dir) = &config.working_dir {
        req.cwd = Some(dir.clone());
    }
    req.user = config
        .user
        .clone()
        .filter(|u| !u.is_empty() && u != "root" && u != "0" && u != "0:0");
    if req.argv.is_empty() {
        req.argv = config
            .entrypoint
            .iter()
            .chain(&config.cmd)
            .cloned()
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(argv: &[&str], env: &[(&str, &str)], cwd: Option<&str>) -> ExecRequest {
        ExecRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: cwd.map(str::to_string),
            tty: None,
            user: Some("agent".into()),
            no_new_privs: true,
            seccomp: airlock_proto::SeccompProfile::Default,
            pids_max: None,
            landlock_write: None,
            root: None,
        }
    }

    fn config() -> OciRunConfig {
        OciRunConfig {
            env: vec![
                "PATH=/app/bin:/bin".into(),
                "MODE=image".into(),
                "junk".into(),
            ],
            working_dir: Some("/app".into()),
            user: Some("1234:1234".into()),
            entrypoint: vec!["/app/run".into()],
            cmd: vec!["--serve".into()],
        }
    }

    #[test]
    fn the_image_fills_in_what_the_caller_did_not_say() {
        let mut r = req(&[], &[("MODE", "caller")], Some("/workspace"));
        apply_image_config(&mut r, &config(), false);
        assert_eq!(r.argv, vec!["/app/run", "--serve"]);
        assert_eq!(
            r.env,
            vec![
                ("PATH".to_string(), "/app/bin:/bin".to_string()),
                ("MODE".to_string(), "caller".to_string())
            ]
        );
        assert_eq!(r.cwd.as_deref(), Some("/app"));
        assert_eq!(r.user.as_deref(), Some("1234:1234"));
    }

    #[test]
    fn the_callers_command_and_directory_win_and_no_user_means_root() {
        let mut r = req(&["sh", "-c", "id"], &[], Some("/tmp"));
        let c = OciRunConfig {
            user: None,
            ..config()
        };
        apply_image_config(&mut r, &c, true);
        assert_eq!(r.argv, vec!["sh", "-c", "id"]);
        assert_eq!(r.cwd.as_deref(), Some("/tmp"));
        assert_eq!(r.user, None);
    }
}
