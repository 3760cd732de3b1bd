//! The mesh of the scale benchmark, as standalone YAML: S Services spread over namespaces, each with two pods
//! (versions v1 and v2), a DestinationRule with both subsets, and a 90/10 VirtualService; two files per Service,
//! as a user would keep them. Pure text generation plus the writes.

use std::net::Ipv4Addr;
use std::path::Path;

/// What the generated mesh looks like.
#[derive(Debug, Clone, Copy)]
pub struct MeshShape {
    pub services: usize,
    pub namespaces: usize,
}

impl MeshShape {
    pub fn namespace_of(&self, service: usize) -> String {
        format!("ns{}", service % self.namespaces.max(1))
    }

    /// The Service, its pods and its DestinationRule.
    pub fn service_file(&self, service: usize, v2_ip: Ipv4Addr) -> String {
        let (name, namespace) = (format!("svc-{service}"), self.namespace_of(service));
        let pod = |version: &str, ip: Ipv4Addr| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-{version}, namespace: {namespace}, labels: {{app: {name}, version: {version}}}}}\n\
                 spec: {{containers: [{{name: app, image: app, ports: [{{name: http, containerPort: 8080}}]}}]}}\n\
                 status: {{podIP: {ip}}}\n"
            )
        };
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
             spec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n{}{}\
             ---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
             spec:\n  host: {name}\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n",
            pod("v1", pod_ip(service, 1)),
            pod("v2", v2_ip),
        )
    }

    /// The canary rule of a Service at `weights` (v1, v2).
    pub fn virtual_service_file(&self, service: usize, weights: [u32; 2]) -> String {
        let (name, namespace) = (format!("svc-{service}"), self.namespace_of(service));
        format!(
            "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
             spec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination: {{host: {name}, subset: v1}}\n      weight: {}\n\
             \x20   - destination: {{host: {name}, subset: v2}}\n      weight: {}\n",
            weights[0], weights[1]
        )
    }

    /// Writes every file of the mesh into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        for service in 0..self.services {
            std::fs::write(dir.join(service_file_name(service)), self.service_file(service, pod_ip(service, 2)))?;
            std::fs::write(dir.join(vs_file_name(service)), self.virtual_service_file(service, [90, 10]))?;
        }
        Ok(())
    }
}

pub fn service_file_name(service: usize) -> String {
    format!("svc-{service}.yaml")
}

pub fn vs_file_name(service: usize) -> String {
    format!("svc-{service}-vs.yaml")
}

/// A pod address in 10.0.0.0/8, distinct per Service and version (`version` 1..=254).
pub fn pod_ip(service: usize, version: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, (service / 256 % 256) as u8, (service % 256) as u8, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_yaml_is_what_it_means() {
        let shape = MeshShape { services: 3, namespaces: 2 };
        let service: Vec<serde_json::Value> =
            shape.service_file(1, pod_ip(1, 2)).split("---\n").map(|d| serde_saphyr::from_str(d).unwrap()).collect();
        assert_eq!(service.len(), 4, "Service, two pods, DestinationRule");
        assert_eq!(service[0]["metadata"]["namespace"], "ns1");
        assert_eq!(service[2]["status"]["podIP"], "10.0.1.2");
        let vs: serde_json::Value = serde_saphyr::from_str(&shape.virtual_service_file(2, [80, 20])).unwrap();
        assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 20);
        assert_eq!(vs["metadata"]["namespace"], "ns0");
    }
}
