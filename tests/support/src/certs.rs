//! Test certificates made with the `openssl` command: a CA, and
//! certificates it issues for host names and addresses, valid for both
//! server and client authentication (a cluster node is both).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A certificate authority whose files live in a test's folder.
#[derive(Clone, Debug)]
pub struct TestCa {
    dir: PathBuf,
    /// The CA's certificate (PEM): what a client trusts.
    pub cert: PathBuf,
    key: PathBuf,
}

/// A certificate and its key, issued by a [`TestCa`].
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (Debian package openssl)");
    assert!(status.success(), "openssl {args:?}");
}

impl TestCa {
    /// A new CA named `name`, its files `NAME-ca.crt` and `NAME-ca.key`
    /// in `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        std::fs::create_dir_all(dir).expect("create the certificates' folder");
        let cert = format!("{name}-ca.crt");
        let key = format!("{name}-ca.key");
        let subject = format!("/CN={name} test CA");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        TestCa {
            dir: dir.to_path_buf(),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }

    /// Issues `NAME.crt` / `NAME.key` for `hosts` (DNS names, or IP
    /// addresses), overwriting earlier files of that name.
    pub fn issue(&self, name: &str, hosts: &[&str]) -> Issued {
        let (cert, key, csr) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        let subject = format!("/CN={}", hosts.first().copied().unwrap_or(name));
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject,
            ],
        );
        let names: Vec<String> = hosts
            .iter()
            .map(|host| match host.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{host}"),
                Err(_) => format!("DNS:{host}"),
            })
            .collect();
        let extensions = format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
            names.join(",")
        );
        let ext = format!("{name}.ext");
        std::fs::write(self.dir.join(&ext), extensions).expect("write the extensions file");
        let ca_cert = self.cert.display().to_string();
        let ca_key = self.key.display().to_string();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        Issued {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }
}
