//! Incremental translation against translation from scratch, after every kind of change the index sees.

use super::*;

#[tokio::test]
async fn an_incremental_translation_equals_a_whole_one_after_every_kind_of_change() {
    type Edit = fn(&mut Vec<String>);
    let edits: [(&str, Edit); 39] = [
        ("a weight edit", |docs| {
            docs[5] = docs[5].replace("weight: 90", "weight: 50").replace("weight: 10", "weight: 50")
        }),
        ("a port no rule names renamed to declare TCP", |docs| {
            let page = docs.iter_mut().find(|d| d.contains("name: productpage")).expect("productpage");
            *page = page.replace("{port: 80}", "{name: mysql, port: 80}");
        }),
        ("consistent hashing on the rule of a host another host routes to", |docs| {
            docs[10] = docs[10].replace("{simple: RANDOM}", "{consistentHash: {httpHeaderName: x-user}}");
            assert!(docs[10].contains("consistentHash"), "the edit applies");
        }),
        ("a pod becomes ready", |docs| docs[3] = docs[3].replace("\"False\"", "\"True\"")),
        ("a new subset and policy", |docs| {
            docs[4] = docs[4].replace(
                "subsets: [",
                "trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}, subsets: [{name: v3, labels: {version: v3}}, ",
            )
        }),
        ("a destination Service loses a port", |docs| docs[7] = docs[7].replace("{name: a, port: 80}, ", "")),
        ("a Service a route names appears", |docs| {
            docs.push("apiVersion: v1\nkind: Service\nmetadata: {name: payments, namespace: bank}\nspec: {ports: [{port: 80}, {port: 8080}]}\n".into())
        }),
        ("a route changes destination", |docs| {
            docs[9] = docs[9].replace("host: audit}", "host: payments, port: {number: 8080}}")
        }),
        ("a rule gains a mirror, and one for a namespace and port only", |docs| {
            let before = docs[9].clone();
            docs[9] = docs[9].replace(
                "http: [{route: [{destination: {host: payments, port: {number: 8080}}}]}]",
                "http: [{match: [{sourceNamespace: shop, port: 80}], route: [{destination: {host: productpage.shop}}]}, \
                 {route: [{destination: {host: payments, port: {number: 8080}}}], mirror: {host: frontend.web}}]",
            );
            assert_ne!(docs[9], before, "the edit applies");
        }),
        ("a policy and a Service go", |docs| {
            docs.remove(10);
            docs.remove(1);
        }),
        ("a rule goes", |docs| {
            docs.retain(|d| !d.contains("name: frontend, namespace: web}\nspec: {hosts"));
        }),
        ("tcp and tls rules appear", |docs| {
            docs.push("apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: bank}\nspec: {clusterIP: 10.96.0.9, ports: [{port: 3306}, {port: 443}]}\n".into());
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: db, namespace: bank}\nspec: {hosts: [db], tcp: [{match: [{port: 3306}], route: [{destination: {host: db}, weight: 90}, {destination: {host: audit, port: {number: 81}}, weight: 10}]}], tls: [{match: [{sniHosts: [db.example.com]}], route: [{destination: {host: ledger}}]}]}\n".into());
        }),
        ("a tcp weight edit", |docs| {
            let rule = docs.iter_mut().find(|d| d.contains("tcp: [")).expect("the tcp rule");
            *rule = rule.replace("weight: 90", "weight: 60").replace("weight: 10", "weight: 40");
        }),
        ("the cluster IP of a Service with tcp rules", |docs| {
            let db = docs.iter_mut().find(|d| d.contains("10.96.0.9")).expect("the db Service");
            *db = db.replace("10.96.0.9", "10.96.0.10");
        }),
        ("a rule is exported to its own namespace only", |docs| {
            let ledger = docs.iter_mut().find(|d| d.contains("spec: {hosts: [ledger]")).expect("the ledger rule");
            *ledger = ledger.replace("spec: {hosts: [ledger]", "spec: {exportTo: [\".\"], hosts: [ledger]");
        }),
        ("a namespace gets its own rule for another namespace's host", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: ledger-for-shop, namespace: shop}\nspec: {exportTo: [\".\"], hosts: [ledger.bank], http: [{route: [{destination: {host: audit.bank, port: {number: 81}}}]}]}\n".into());
        }),
        ("a rule is exported to another namespace by name", |docs| {
            let ledger = docs.iter_mut().find(|d| d.contains("exportTo: [\".\"], hosts: [ledger]")).expect("ledger");
            *ledger = ledger.replace("exportTo: [\".\"]", "exportTo: [\".\", web]");
        }),
        ("a namespace's own rule goes public", |docs| {
            let own = docs.iter_mut().find(|d| d.contains("name: ledger-for-shop")).expect("shop's rule");
            *own = own.replace("exportTo: [\".\"], ", "");
        }),
        ("a wildcard rule appears", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: bank-wide, namespace: ops}\nspec: {hosts: [\"*.bank.svc.cluster.local\"], http: [{route: [{destination: {host: ledger.bank}}], timeout: 3s}]}\n".into());
        }),
        ("a Service the wildcard matches appears", |docs| {
            docs.push("apiVersion: v1\nkind: Service\nmetadata: {name: vault, namespace: bank}\nspec: {ports: [{port: 80}]}\n".into());
        }),
        ("the wildcard rule changes destination", |docs| {
            let rule = docs.iter_mut().find(|d| d.contains("name: bank-wide")).expect("the wildcard rule");
            *rule = rule.replace("host: ledger.bank}", "host: audit.bank, port: {number: 80}}");
        }),
        ("consistent hashing on a host a wildcard rule sends to", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: audit-hash, namespace: bank}\nspec: {host: audit, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}}\n".into());
        }),
        ("a rule for every host, for one namespace", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: everything, namespace: web}\nspec: {exportTo: [\".\"], hosts: [\"*\"], http: [{route: [{destination: {host: frontend}}]}]}\n".into());
        }),
        ("tcp rules for a wildcard host", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: bank-tcp, namespace: ops}\nspec: {hosts: [\"*.bank.svc.cluster.local\"], tcp: [{match: [{port: 81}], route: [{destination: {host: ledger.bank}}]}]}\n".into());
            docs.push("apiVersion: v1\nkind: Service\nmetadata: {name: vault, namespace: bank}\nspec: {clusterIP: 10.96.0.20, ports: [{port: 81}]}\n".into());
            docs.retain(|d| !d.contains("name: vault, namespace: bank}\nspec: {ports"));
        }),
        ("the wildcard rule goes", |docs| docs.retain(|d| !d.contains("name: bank-wide"))),
        ("a rule delegates to a delegate that does not exist yet", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: frontend, namespace: web}\nspec: {hosts: [frontend], http: [{match: [{uri: {prefix: /api}}], delegate: {name: api, namespace: bank}, timeout: 2s}, {route: [{destination: {host: frontend}}]}]}\n".into());
        }),
        ("the delegate appears", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: api, namespace: bank}\nspec: {http: [{match: [{uri: {prefix: /api/v1}}], route: [{destination: {host: ledger}}]}, {route: [{destination: {host: payments, port: {number: 80}}}]}]}\n".into());
        }),
        ("the delegate changes destination", |docs| {
            let api = docs.iter_mut().find(|d| d.contains("name: api, namespace: bank")).expect("the delegate");
            *api = api.replace("{host: ledger}", "{host: audit, port: {number: 81}}");
        }),
        ("the delegate is no longer exported to the root's namespace", |docs| {
            let api = docs.iter_mut().find(|d| d.contains("name: api, namespace: bank")).expect("the delegate");
            *api = api.replace("spec: {http", "spec: {exportTo: [\".\"], http");
        }),
        ("a namespace gets its own DestinationRule for another namespace's host", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: audit-for-web, namespace: web}\nspec: {host: audit.bank, exportTo: [\".\"], trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}, subsets: [{name: v1, labels: {version: v1}}]}\n".into());
        }),
        ("a route edit while a namespace has its own DestinationRule", |docs| {
            let api = docs.iter_mut().find(|d| d.contains("name: api, namespace: bank")).expect("the delegate");
            *api = api.replace("{prefix: /api/v1}", "{prefix: /api/v2}");
        }),
        ("a wildcard DestinationRule in the root namespace", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: mesh-default, namespace: weft-system}\nspec: {host: \"*\", trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}\n".into());
        }),
        ("a DestinationRule exported to one other namespace by name", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: ledger-for-shop, namespace: bank}\nspec: {host: ledger, exportTo: [shop], subsets: [{name: v1, labels: {version: v1}}]}\n".into());
        }),
        ("a namespace's own DestinationRule is edited", |docs| {
            let own = docs.iter_mut().find(|d| d.contains("name: audit-for-web")).expect("web's rule");
            *own = own.replace("httpHeaderName: x-user", "httpHeaderName: x-tenant");
        }),
        ("a namespace's own DestinationRule goes", |docs| docs.retain(|d| !d.contains("name: audit-for-web"))),
        ("a namespace gets its own wildcard DestinationRule", |docs| {
            docs.push("apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: bank-for-web, namespace: web}\nspec: {host: \"*.bank.svc.cluster.local\", exportTo: [\".\"], trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}}\n".into());
        }),
        ("a Service that wildcard rule matches appears", |docs| {
            docs.push("apiVersion: v1\nkind: Service\nmetadata: {name: safe, namespace: bank}\nspec: {selector: {app: audit}, ports: [{port: 80}]}\n".into());
        }),
        ("an endpoint change of a Service that rule matches", |docs| {
            let audit = docs.iter_mut().find(|d| d.contains("name: audit-1")).expect("audit's pod");
            *audit = audit.replace("10.2.0.1", "10.2.0.9");
        }),
        ("a Service that wildcard rule matches goes", |docs| {
            docs.retain(|d| !d.contains("name: safe, namespace: bank"))
        }),
    ];
    let nodes = [proxy("a", "shop"), proxy("b", "bank"), proxy("c", "web")];
    let asked: BTreeSet<String> = ["80/ledger.bank", "9080/reviews.shop", "80/payments.bank"].map(String::from).into();
    let incremental = Translations::default();
    let mut edited = EditedYaml::default();
    let mut docs = base_mesh();
    for (step, (what, edit)) in std::iter::once(("the start", (|_| {}) as Edit)).chain(edits).enumerate() {
        edit(&mut docs);
        let config = step as u64 + 1;
        // Translated incrementally from the snapshot the index brought up to date; as a whole from one built anew.
        let current = Arc::new(Published {
            snapshot: edited.snapshot(&docs.join("---\n")),
            at: std::time::Instant::now(),
            config,
        });
        let fresh = published_docs(config, &docs);
        for ((namespace, scope, on_demand), declared_tcp) in
            every_wanted(&nodes, &asked).into_iter().zip([false, true].into_iter().cycle())
        {
            let node = proxy("p", &namespace);
            let wanted = Wanted { node: &node, scope, on_demand: on_demand.as_ref(), declared_tcp, verified: false };
            let got = incremental.for_proxy(&current, wanted).await;
            let whole = Translations::default().for_proxy(&fresh, wanted).await;
            assert_same(&got, &whole, &format!("after {what}: {namespace} {scope:?} {on_demand:?} {declared_tcp}"));
        }
    }
}
