// Package cases holds the table of objects the validation rules are tested
// on, with the verdict expected on each. It is shared by the unit tests and
// by the differential test against istiod's own rules (galley/compat).
package cases

import (
	"fmt"

	"github.com/meshd/meshd/pkg/schema"
)

// doc builds one object of kind in namespace default, named x, with spec
// written in YAML flow style (so that the table stays free of indentation).
func doc(kind, spec string) string { return docMeta(kind, "{name: x, namespace: default}", spec) }

func docMeta(kind, meta, spec string) string {
	k, ok := schema.ByName(kind)
	if !ok {
		panic("unknown kind " + kind)
	}
	return fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata: %s\nspec: %s\n", k.APIVersion(), kind, meta, spec)
}

// Case is one object and the verdict expected on it.
type Case struct {
	// Name names the case.
	Name string
	// Doc is the object, in YAML.
	Doc string
	// Errs lists one substring per expected error ("path: message"); the
	// object must produce exactly these errors.
	Errs []string
	// Warns lists one substring per expected warning, exactly as errs.
	Warns []string
}

// Compatibility holds objects istiod rejects, each expected to be rejected
// with a message of the same meaning, and objects it accepts that a naive
// validator would refuse: the compatibility contract of the issue.
var Compatibility = []Case{
	{
		Name: "uri regex that does not compile",
		Doc:  doc("VirtualService", `{hosts: [reviews], http: [{match: [{uri: {regex: "/api/(v1"}}], route: [{destination: {host: reviews}}]}]}`),
		Errs: []string{"spec.http[0].match[0].uri.regex: error parsing regexp: missing closing ): `/api/(v1`"},
	},
	{
		Name: "outlier detection interval below ms precision",
		Doc:  doc("DestinationRule", `{host: reviews, trafficPolicy: {outlierDetection: {interval: 1500us}}}`),
		Errs: []string{"spec.trafficPolicy.outlierDetection.interval: only durations to ms precision are supported"},
	},
	{
		Name: "gateway server with no hosts",
		Doc:  doc("Gateway", `{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: []}]}`),
		Errs: []string{"spec.servers[0].hosts: server config must contain at least one host"},
	},
	{
		Name: "authorization rule with an empty from.source",
		Doc:  doc("AuthorizationPolicy", `{rules: [{from: [{source: {}}]}]}`),
		Errs: []string{"spec.rules[0].from[0].source: `from.source` must not be empty, found at rule 0"},
	},
	{
		Name: "mesh-bound virtual service with host *",
		Doc:  doc("VirtualService", `{hosts: ["*"], http: [{route: [{destination: {host: reviews}}]}]}`),
		Errs: []string{"spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway"},
	},
	{
		Name:  "weights 50 + 30 are relative, accepted with a warning",
		Doc:   doc("VirtualService", `{hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}, weight: 50}, {destination: {host: reviews, subset: v2}, weight: 30}]}]}`),
		Warns: []string{"spec.http[0].route: weights sum to 80, not 100"},
	},
	{
		Name: "weights of zero in total",
		Doc:  doc("VirtualService", `{hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}, weight: 0}, {destination: {host: reviews, subset: v2}, weight: 0}]}]}`),
		Errs: []string{"spec.http[0].route: total destination weight = 0"},
	},
	{
		Name: "host * bound to mesh and a gateway",
		Doc:  doc("VirtualService", `{hosts: ["*"], gateways: [mesh, istio-system/ingress], http: [{route: [{destination: {host: reviews}}]}]}`),
		Errs: []string{"spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway"},
	},
	{
		Name: "host * bound to a gateway only",
		Doc:  doc("VirtualService", `{hosts: ["*"], gateways: [istio-system/ingress], http: [{route: [{destination: {host: reviews}}]}]}`),
	},
	{
		Name: "single destination without weight",
		Doc:  doc("VirtualService", `{hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}`),
	},
	{
		Name: "upper case in a host, accepted by istiod",
		Doc:  doc("VirtualService", `{hosts: [Reviews.Default.svc.cluster.local], http: [{route: [{destination: {host: Reviews}}]}]}`),
	},
	{
		Name: "an IP address as a virtual service host",
		Doc:  doc("VirtualService", `{hosts: [192.0.2.1], http: [{route: [{destination: {host: reviews}}]}]}`),
	},
	{
		Name: "tcp idle timeout of zero disables it",
		Doc:  doc("DestinationRule", `{host: db, trafficPolicy: {connectionPool: {tcp: {idleTimeout: 0s}}}}`),
	},
	{
		Name: "http status 600 is accepted by istiod",
		Doc:  doc("VirtualService", `{hosts: [a], http: [{directResponse: {status: 600}}]}`),
	},
	{
		Name: "tls on a plain HTTP server only to redirect",
		Doc:  doc("Gateway", `{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"], tls: {httpsRedirect: true}}]}`),
	},
	{
		Name:  "deprecated mirrorPercent is accepted with a warning",
		Doc:   doc("VirtualService", `{hosts: [a], http: [{mirror: {host: b}, mirrorPercent: 50, route: [{destination: {host: a}}]}]}`),
		Warns: []string{`spec.http[0].mirrorPercent: using deprecated setting "mirrorPercent"`},
	},
	{
		Name:  "an unreachable rule is a warning",
		Doc:   doc("VirtualService", `{hosts: [a], http: [{route: [{destination: {host: a}}]}, {match: [{uri: {prefix: /x}}], route: [{destination: {host: b}}]}]}`),
		Warns: []string{"spec.http[1]: rule is never used: rule 0 before it has no matches"},
	},
	{
		Name:  "retry longer than the route timeout is a warning",
		Doc:   doc("VirtualService", `{hosts: [a], http: [{timeout: 1s, retries: {attempts: 2, perTryTimeout: 2s}, route: [{destination: {host: a}}]}]}`),
		Warns: []string{"spec.http[0].retries.perTryTimeout: perTryTimeout 2s is longer than the route timeout 1s"},
	},
}

// Invalid holds objects that must be rejected, one rule or so each.
var Invalid = []Case{
	// VirtualService
	{Name: "vs no routes", Doc: doc("VirtualService", `{hosts: [reviews]}`),
		Errs: []string{"spec: http, tcp or tls must be provided in virtual service"}},
	{Name: "vs http route with nothing to do", Doc: doc("VirtualService", `{hosts: [reviews], http: [{timeout: 5s}]}`),
		Errs: []string{"spec.http[0]: HTTP route, redirect or direct_response is required"}},
	{Name: "vs negative weight", Doc: doc("VirtualService", `{hosts: [r], http: [{route: [{destination: {host: r, subset: a}, weight: -10}, {destination: {host: r, subset: b}, weight: 110}]}]}`),
		Errs: []string{"spec.http[0].route[0].weight: weight -10 < 0"}},
	{Name: "vs timeout in microseconds", Doc: doc("VirtualService", `{hosts: [r], http: [{timeout: 1500us, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].timeout: only durations to ms precision are supported, got 1.5ms"}},
	{Name: "vs zero timeout", Doc: doc("VirtualService", `{hosts: [r], http: [{timeout: 0s, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].timeout: duration must be at least 1ms"}},
	{Name: "vs negative retry attempts", Doc: doc("VirtualService", `{hosts: [r], http: [{retries: {attempts: -1}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].retries.attempts: attempts cannot be negative"}},
	{Name: "vs retry policy with zero attempts", Doc: doc("VirtualService", `{hosts: [r], http: [{retries: {attempts: 0, perTryTimeout: 1s}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].retries.attempts: http retry policy configured when attempts are set to 0"}},
	{Name: "vs unknown retryOn", Doc: doc("VirtualService", `{hosts: [r], http: [{retries: {attempts: 2, retryOn: "5xx,bogus"}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{`spec.http[0].retries.retryOn: "bogus" is not a valid retryOn policy`}},
	{Name: "vs fault delay over 100 percent", Doc: doc("VirtualService", `{hosts: [r], http: [{fault: {delay: {percentage: {value: 150}, fixedDelay: 1s}}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].fault.delay.percentage: percentage 150 is neither 0.0, nor in range [0.0001, 100.0]"}},
	{Name: "vs empty fault", Doc: doc("VirtualService", `{hosts: [r], http: [{fault: {}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].fault: HTTP fault injection must have an abort and/or a delay"}},
	{Name: "vs abort with status 99", Doc: doc("VirtualService", `{hosts: [r], http: [{fault: {abort: {httpStatus: 99, percentage: {value: 10}}}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].fault.abort.httpStatus: HTTP status 99 is not in range 200-599"}},
	{Name: "vs abort with unknown grpc status", Doc: doc("VirtualService", `{hosts: [r], http: [{fault: {abort: {grpcStatus: NOPE}}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{`spec.http[0].fault.abort.grpcStatus: gRPC status "NOPE" is not supported`}},
	{Name: "vs route and redirect", Doc: doc("VirtualService", `{hosts: [r], http: [{redirect: {uri: /x}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0]: HTTP route cannot contain both route and redirect"}},
	{Name: "vs redirect code 200", Doc: doc("VirtualService", `{hosts: [r], http: [{redirect: {uri: /x, redirectCode: 200}}]}`),
		Errs: []string{"spec.http[0].redirect.redirectCode: 200 is not a valid redirect code, must be 3xx"}},
	{Name: "vs destination host *", Doc: doc("VirtualService", `{hosts: [r], http: [{route: [{destination: {host: "*"}}]}]}`),
		Errs: []string{"spec.http[0].route[0].destination.host: invalid destination host *"}},
	{Name: "vs destination host with underscore", Doc: doc("VirtualService", `{hosts: [r], http: [{route: [{destination: {host: bad_host}}]}]}`),
		Errs: []string{`spec.http[0].route[0].destination.host: domain name "bad_host" invalid (label "bad_host" invalid)`}},
	{Name: "vs subset name not a label", Doc: doc("VirtualService", `{hosts: [r], http: [{route: [{destination: {host: r, subset: v1_x}}]}]}`),
		Errs: []string{"spec.http[0].route[0].destination.subset: subset name is invalid: v1_x"}},
	{Name: "vs header match name with a space", Doc: doc("VirtualService", `{hosts: [r], http: [{match: [{headers: {"bad header": {exact: x}}}], route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].match[0].headers[bad header]: header name bad header is not a valid header name"}},
	{Name: "vs empty header prefix", Doc: doc("VirtualService", `{hosts: [r], http: [{match: [{headers: {x-a: {prefix: ""}}}], route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].match[0].headers[x-a].prefix: prefix string match should not be empty"}},
	{Name: "vs set :path header", Doc: doc("VirtualService", `{hosts: [r], http: [{headers: {request: {set: {":path": /x}}}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{`spec.http[0].headers.request.set[:path]: invalid header ":path": header cannot have ":" prefix`}},
	{Name: "vs set Host on a response", Doc: doc("VirtualService", `{hosts: [r], http: [{route: [{destination: {host: r}, headers: {response: {set: {host: x}}}}]}]}`),
		Errs: []string{`spec.http[0].route[0].headers.response.set[host]: invalid header "host": cannot set Host header`}},
	{Name: "vs header value with an open variable", Doc: doc("VirtualService", `{hosts: [r], http: [{headers: {request: {add: {x-a: "%HOSTNAME"}}}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{`spec.http[0].headers.request.add[x-a]: header value "%HOSTNAME": un-terminated variable expression`}},
	{Name: "vs duplicate hosts", Doc: doc("VirtualService", `{hosts: [r.example.com, "*.example.com"], http: [{route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.hosts[1]: duplicate hosts in virtual service: r.example.com & *.example.com"}},
	{Name: "vs bad gateway name", Doc: doc("VirtualService", `{hosts: [r], gateways: [istio-system/gw_1], http: [{route: [{destination: {host: r}}]}]}`),
		Errs: []string{`spec.gateways[0]: invalid value for gateway name: "gw_1"`}},
	{Name: "vs jwt claim routing on the mesh", Doc: doc("VirtualService", `{hosts: [r], http: [{match: [{headers: {"@request.auth.claims.group": {exact: admin}}}], route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].match[0].headers[@request.auth.claims.group]: JWT claim based routing is only supported for virtual services bound to gateways"}},
	{Name: "vs cors method FETCH", Doc: doc("VirtualService", `{hosts: [r], http: [{corsPolicy: {allowMethods: [GET, FETCH]}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{`spec.http[0].corsPolicy.allowMethods[1]: "FETCH" is not a supported HTTP method`}},
	{Name: "vs cors max age with millis", Doc: doc("VirtualService", `{hosts: [r], http: [{corsPolicy: {maxAge: 1500ms}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].corsPolicy.maxAge: max_age duration is accurate only to seconds precision"}},
	{Name: "vs mirror percentage over 100", Doc: doc("VirtualService", `{hosts: [r], http: [{mirror: {host: m}, mirrorPercentage: {value: 101}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].mirrorPercentage: mirror_percentage must have a max value of 100"}},
	{Name: "vs tcp route without destinations", Doc: doc("VirtualService", `{hosts: [db], tcp: [{match: [{port: 3306}]}]}`),
		Errs: []string{"spec.tcp[0].route: TCP route is required"}},
	{Name: "vs tls match without sni hosts", Doc: doc("VirtualService", `{hosts: [a.example.com], tls: [{match: [{port: 443}], route: [{destination: {host: a.example.com}}]}]}`),
		Errs: []string{"spec.tls[0].match[0].sniHosts: TLS match must have at least one SNI host"}},
	{Name: "vs tls sni host outside the hosts", Doc: doc("VirtualService", `{hosts: [a.example.com], tls: [{match: [{sniHosts: [b.example.com]}], route: [{destination: {host: a.example.com}}]}]}`),
		Errs: []string{`spec.tls[0].match[0].sniHosts[0]: SNI host "b.example.com" is not a compatible subset of any of the virtual service hosts`}},
	{Name: "vs delegate with gateways", Doc: doc("VirtualService", `{gateways: [istio-system/gw], http: [{route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.gateways: delegate virtual service must have no gateways specified"}},
	{Name: "vs empty rewrite", Doc: doc("VirtualService", `{hosts: [r], http: [{rewrite: {}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].rewrite: rewrite must specify at least one of uri, uriRegexRewrite, or authority"}},
	{Name: "vs match on port 70000", Doc: doc("VirtualService", `{hosts: [r], http: [{match: [{port: 70000}], route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].match[0].port: port number 70000 must be in the range 1..65535"}},
	{Name: "vs bad source label", Doc: doc("VirtualService", `{hosts: [r], http: [{match: [{sourceLabels: {"bad key": x}}], route: [{destination: {host: r}}]}]}`),
		Errs: []string{`spec.http[0].match[0].sourceLabels[bad key]: invalid label key: "bad key"`}},
	{Name: "vs rewrite regex that does not compile", Doc: doc("VirtualService", `{hosts: [r], http: [{rewrite: {uriRegexRewrite: {match: "^/(a", rewrite: /b}}, route: [{destination: {host: r}}]}]}`),
		Errs: []string{"spec.http[0].rewrite.uriRegexRewrite.match: error parsing regexp"}},
	{Name: "vs several errors at once", Doc: doc("VirtualService", `{hosts: ["*"], http: [{timeout: 1500us, route: [{destination: {host: r}, weight: -1}, {destination: {host: s}, weight: 1}]}]}`),
		Errs: []string{"spec.hosts[0]: wildcard host *", "spec.http[0].timeout: only durations to ms precision", "spec.http[0].route[0].weight: weight -1 < 0", "spec.http[0].route: total destination weight = 0"}},

	// DestinationRule
	{Name: "dr empty traffic policy", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {}}`),
		Errs: []string{"spec.trafficPolicy: traffic policy must have at least one field"}},
	{Name: "dr negative max connections", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}}`),
		Errs: []string{"spec.trafficPolicy.connectionPool.tcp.maxConnections: max connections must be non-negative"}},
	{Name: "dr sub-millisecond connect timeout", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {connectionPool: {tcp: {connectTimeout: 500us}}}}`),
		Errs: []string{"spec.trafficPolicy.connectionPool.tcp.connectTimeout: duration must be at least 1ms"}},
	{Name: "dr max ejection 150 percent", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}}`),
		Errs: []string{"spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 150 is not in range 0..100"}},
	{Name: "dr duplicate subset names", Doc: doc("DestinationRule", `{host: r, subsets: [{name: v1, labels: {version: v1}}, {name: v1, labels: {version: v2}}]}`),
		Errs: []string{"spec.subsets[1].name: duplicate subset names: v1"}},
	{Name: "dr subset name with a dot", Doc: doc("DestinationRule", `{host: r, subsets: [{name: v1.0, labels: {version: v1}}]}`),
		Errs: []string{"spec.subsets[0].name: subset name is invalid: v1.0"}},
	{Name: "dr subset label value with a space", Doc: doc("DestinationRule", `{host: r, subsets: [{name: v1, labels: {version: "v 1"}}]}`),
		Errs: []string{`spec.subsets[0].labels[version]: invalid label value: "v 1"`}},
	{Name: "dr empty host", Doc: doc("DestinationRule", `{host: ""}`),
		Errs: []string{"spec.host: empty domain name not allowed"}},
	{Name: "dr cookie hash without name", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {ttl: 10s}}}}}`),
		Errs: []string{"spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: name required for HttpCookie"}},
	{Name: "dr maglev table not prime", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 100}}}}}`),
		Errs: []string{"spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be a prime number for maglev"}},
	{Name: "dr mutual tls without certificates", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {tls: {mode: MUTUAL}}}`),
		Errs: []string{"spec.trafficPolicy.tls.clientCertificate: client certificate required for mutual tls", "spec.trafficPolicy.tls.privateKey: private key required for mutual tls"}},
	{Name: "dr duplicate exportTo", Doc: doc("DestinationRule", `{host: r, exportTo: [default, "."]}`),
		Errs: []string{"spec.exportTo[1]: duplicate entries in exportTo: . and current namespace default"}},
	{Name: "dr local origin failures without split", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 3}}}`),
		Errs: []string{"spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false"}},
	{Name: "dr empty connection pool", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {connectionPool: {}}}`),
		Errs: []string{"spec.trafficPolicy.connectionPool: connection pool must have at least one field"}},
	{Name: "dr locality weights summing to 90", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {outlierDetection: {interval: 1s}, loadBalancer: {localityLbSetting: {distribute: [{from: "us/*", to: {"us/a/*": 50, "us/b/*": 40}}]}}}}`),
		Errs: []string{"spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: total locality weight 90 != 100"}},
	{Name: "dr port level setting without port", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {portLevelSettings: [{tls: {mode: SIMPLE}}]}}`),
		Errs: []string{"spec.trafficPolicy.portLevelSettings[0].port: portTrafficPolicy must have valid port"}},

	// Gateway
	{Name: "gw without servers", Doc: doc("Gateway", `{selector: {istio: ingressgateway}}`),
		Errs: []string{"spec.servers: gateway must have at least one server"}},
	{Name: "gw https port without tls", Doc: doc("Gateway", `{servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ["*"]}]}`),
		Errs: []string{"spec.servers[0].tls: server must have TLS settings for HTTPS/TLS protocols"}},
	{Name: "gw simple tls without certificates", Doc: doc("Gateway", `{servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ["*"], tls: {mode: SIMPLE}}]}`),
		Errs: []string{"spec.servers[0].tls.serverCertificate: SIMPLE TLS requires a server certificate", "spec.servers[0].tls.privateKey: SIMPLE TLS requires a private key"}},
	{Name: "gw istio mutual with credential", Doc: doc("Gateway", `{servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ["*"], tls: {mode: ISTIO_MUTUAL, credentialName: c}}]}`),
		Errs: []string{"spec.servers[0].tls.credentialName: ISTIO_MUTUAL TLS cannot have associated credentialName"}},
	{Name: "gw port without name", Doc: doc("Gateway", `{servers: [{port: {number: 80, protocol: HTTP}, hosts: ["*"]}]}`),
		Errs: []string{"spec.servers[0].port.name: port name must be set"}},
	{Name: "gw unknown protocol", Doc: doc("Gateway", `{servers: [{port: {number: 80, name: p, protocol: FOO}, hosts: ["*"]}]}`),
		Errs: []string{`spec.servers[0].port.protocol: invalid protocol "FOO"`}},
	{Name: "gw short host name", Doc: doc("Gateway", `{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [reviews]}]}`),
		Errs: []string{`spec.servers[0].hosts[0]: short names (non FQDN) are not allowed, got "reviews"`}},
	{Name: "gw host with a bad namespace", Doc: doc("Gateway", `{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["bad_ns/a.example.com"]}]}`),
		Errs: []string{`spec.servers[0].hosts[0]: invalid namespace value "bad_ns" in gateway`}},
	{Name: "gw duplicate port names", Doc: doc("Gateway", `{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}, {port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]}`),
		Errs: []string{"spec.servers[1].port.name: port names in servers must be unique: duplicate name http"}},
	{Name: "gw plain http with terminating tls", Doc: doc("Gateway", `{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"], tls: {mode: SIMPLE, credentialName: c}}]}`),
		Errs: []string{"spec.servers[0].tls: server cannot have TLS settings for plain text HTTP ports"}},
	{Name: "gw mutual without client CA", Doc: doc("Gateway", `{servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ["*"], tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}}]}`),
		Errs: []string{"spec.servers[0].tls.caCertificates: MUTUAL TLS requires a client CA bundle"}},
	{Name: "gw two certificate sources", Doc: doc("Gateway", `{servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ["*"], tls: {mode: SIMPLE, credentialName: c, serverCertificate: /c.pem, privateKey: /k.pem}}]}`),
		Errs: []string{"spec.servers[0].tls: only one of credentialName, credentialNames, serverCertificate/privateKey, tlsCertificates should be specified"}},
	{Name: "gw name with a dot", Doc: docMeta("Gateway", "{name: my.gw, namespace: default}", `{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]}`),
		Errs: []string{`metadata.name: invalid gateway name: "my.gw"`}},

	// ServiceEntry
	{Name: "se dns with a wildcard host and no endpoints", Doc: doc("ServiceEntry", `{hosts: ["*.example.com"], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS}`),
		Errs: []string{`spec.hosts[0]: hosts must be FQDN if no endpoints are provided for resolution mode DNS: domain name "*.example.com" invalid`}},
	{Name: "se host *", Doc: doc("ServiceEntry", `{hosts: ["*"], ports: [{number: 80, name: http, protocol: HTTP}], resolution: NONE}`),
		Errs: []string{"spec.hosts[0]: invalid host *"}},
	{Name: "se without hosts", Doc: doc("ServiceEntry", `{ports: [{number: 80, name: http, protocol: HTTP}]}`),
		Errs: []string{"spec.hosts: service entry must have at least one host"}},
	{Name: "se cidr with dns resolution", Doc: doc("ServiceEntry", `{hosts: [a.example.com], addresses: [10.0.0.0/8], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}`),
		Errs: []string{"spec.addresses: CIDR addresses are allowed only for NONE/STATIC resolution types"}},
	{Name: "se resolution none with endpoints", Doc: doc("ServiceEntry", `{hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: NONE, endpoints: [{address: 192.0.2.1}]}`),
		Errs: []string{"spec.endpoints: no endpoints should be provided for resolution type none"}},
	{Name: "se static endpoint that is a name", Doc: doc("ServiceEntry", `{hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: STATIC, endpoints: [{address: a.example.com}]}`),
		Errs: []string{`spec.endpoints[0].address: endpoint address "a.example.com" is not a valid IP address`}},
	{Name: "se duplicate port numbers", Doc: doc("ServiceEntry", `{hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}, {number: 80, name: web, protocol: HTTP}], resolution: DNS}`),
		Errs: []string{"spec.ports[1].number: service entry port 80 already defined"}},
	{Name: "se unknown port protocol", Doc: doc("ServiceEntry", `{hosts: [a.example.com], ports: [{number: 80, name: http, protocol: SPDY}], resolution: DNS}`),
		Errs: []string{"spec.ports[0].protocol: unsupported protocol: SPDY"}},
	{Name: "se endpoint port not on the entry", Doc: doc("ServiceEntry", `{hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: STATIC, endpoints: [{address: 192.0.2.1, ports: {grpc: 9090}}]}`),
		Errs: []string{"spec.endpoints[0].ports[grpc]: endpoint port 9090 is not defined by the service entry"}},
	{Name: "se several hosts on a tcp port", Doc: doc("ServiceEntry", `{hosts: [a.example.com, b.example.com], ports: [{number: 5432, name: pg, protocol: TCP}], resolution: DNS}`),
		Errs: []string{"spec.ports[0].protocol: multiple hosts provided with non-HTTP, non-TLS ports"}},
	{Name: "se selector and endpoints", Doc: doc("ServiceEntry", `{hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: STATIC, workloadSelector: {labels: {app: a}}, endpoints: [{address: 192.0.2.1}]}`),
		Errs: []string{"spec: only one of WorkloadSelector or Endpoints is allowed in Service Entry"}},
	{Name: "se round robin with two endpoints", Doc: doc("ServiceEntry", `{hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS_ROUND_ROBIN, endpoints: [{address: a1.example.com}, {address: a2.example.com}]}`),
		Errs: []string{"spec.endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN"}},
	{Name: "se exported to no one and someone", Doc: doc("ServiceEntry", `{hosts: [a.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS, exportTo: ["~", "."]}`),
		Errs: []string{"spec.exportTo: cannot export service entry to no one (~) and someone"}},

	// Sidecar
	{Name: "sidecar egress host without namespace", Doc: doc("Sidecar", `{egress: [{hosts: [a.example.com]}]}`),
		Errs: []string{"spec.egress[0].hosts[0]: host must be of form namespace/dnsName"}},
	{Name: "sidecar egress without hosts", Doc: doc("Sidecar", `{egress: [{port: {number: 80, name: http, protocol: HTTP}, hosts: []}]}`),
		Errs: []string{"spec.egress[0].hosts: sidecar: egress listener must contain at least one host"}},
	{Name: "sidecar with nothing", Doc: doc("Sidecar", `{}`),
		Errs: []string{"spec: sidecar: empty configuration provided"}},
	{Name: "sidecar egress short host", Doc: doc("Sidecar", `{egress: [{hosts: ["./reviews"]}]}`),
		Errs: []string{`spec.egress[0].hosts[0]: short names (non FQDN) are not allowed, got "reviews"`}},
	{Name: "sidecar catch-all egress not last", Doc: doc("Sidecar", `{egress: [{hosts: ["./*"]}, {port: {number: 80, name: http, protocol: HTTP}, hosts: ["./*"]}]}`),
		Errs: []string{"spec.egress[0]: sidecar: the egress listener with empty port should be the last listener in the list"}},
	{Name: "sidecar ingress without port", Doc: doc("Sidecar", `{ingress: [{defaultEndpoint: "127.0.0.1:8080"}]}`),
		Errs: []string{"spec.ingress[0].port: sidecar: port is required for ingress listeners"}},
	{Name: "sidecar ingress to a foreign address", Doc: doc("Sidecar", `{ingress: [{port: {number: 80, name: http, protocol: HTTP}, defaultEndpoint: "192.0.2.1:8080"}]}`),
		Errs: []string{"spec.ingress[0].defaultEndpoint: sidecar: defaultEndpoint must be of form 127.0.0.1:<port>"}},

	// WorkloadEntry, WorkloadGroup
	{Name: "we without address", Doc: doc("WorkloadEntry", `{labels: {app: a}}`),
		Errs: []string{"spec.address: address is required"}},
	{Name: "we address that is neither name nor IP", Doc: doc("WorkloadEntry", `{address: "not an ip!"}`),
		Errs: []string{`spec.address: endpoint address "not an ip!" is not a valid FQDN or an IP address`}},
	{Name: "we port 0", Doc: doc("WorkloadEntry", `{address: 192.0.2.1, ports: {http: 0}}`),
		Errs: []string{"spec.ports[http]: port number 0 must be in the range 1..65535"}},
	{Name: "wg without template", Doc: doc("WorkloadGroup", `{metadata: {labels: {app: a}}}`),
		Errs: []string{"spec.template: template is required"}},
	{Name: "wg probe without a method", Doc: doc("WorkloadGroup", `{template: {}, probe: {periodSeconds: 5}}`),
		Errs: []string{"spec.probe: probe must set one of httpGet, tcpSocket or exec"}},

	// PeerAuthentication
	{Name: "pa port level mtls for a namespace", Doc: doc("PeerAuthentication", `{mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}`),
		Errs: []string{"spec.portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS"}},
	{Name: "pa wildcard selector", Doc: doc("PeerAuthentication", `{selector: {matchLabels: {app: "*"}}, mtls: {mode: STRICT}}`),
		Errs: []string{`spec.selector.matchLabels[app]: wildcard is not supported in selector: "app=*"`}},
	{Name: "pa port 0", Doc: doc("PeerAuthentication", `{selector: {matchLabels: {app: a}}, portLevelMtls: {0: {mode: DISABLE}}}`),
		Errs: []string{"spec.portLevelMtls[0]: port must be in range 1..65535"}},

	// AuthorizationPolicy
	{Name: "ap empty to.operation", Doc: doc("AuthorizationPolicy", `{rules: [{to: [{operation: {}}]}]}`),
		Errs: []string{"spec.rules[0].to[0].operation: `to.operation` must not be empty, found at rule 0"}},
	{Name: "ap deny without rules", Doc: doc("AuthorizationPolicy", `{action: DENY}`),
		Errs: []string{"spec.rules: DENY action without `rules` is meaningless"}},
	{Name: "ap bad ip block", Doc: doc("AuthorizationPolicy", `{rules: [{from: [{source: {ipBlocks: [1.2.3.4/99]}}]}]}`),
		Errs: []string{"spec.rules[0].from[0].source.ipBlocks: bad CIDR range (1.2.3.4/99)"}},
	{Name: "ap port that is a name", Doc: doc("AuthorizationPolicy", `{rules: [{to: [{operation: {ports: [http]}}]}]}`),
		Errs: []string{"spec.rules[0].to[0].operation.ports: bad port (http)"}},
	{Name: "ap unknown condition key", Doc: doc("AuthorizationPolicy", `{rules: [{when: [{key: foo.bar, values: [x]}]}]}`),
		Errs: []string{"spec.rules[0].when[0].values: invalid `value` for `key` foo.bar: unknown attribute: foo.bar"}},
	{Name: "ap custom without provider", Doc: doc("AuthorizationPolicy", `{action: CUSTOM, rules: [{}]}`),
		Errs: []string{"spec.provider.name: `provider.name` must not be empty"}},
	{Name: "ap provider on allow", Doc: doc("AuthorizationPolicy", `{action: ALLOW, provider: {name: ext}, rules: [{}]}`),
		Errs: []string{"spec.provider: `provider` must not be with non CUSTOM action, found ALLOW"}},
	{Name: "ap service accounts with namespaces", Doc: doc("AuthorizationPolicy", `{rules: [{from: [{source: {namespaces: [a], serviceAccounts: [a/b]}}]}]}`),
		Errs: []string{"spec.rules[0].from[0].source: cannot set serviceAccounts with namespaces or principals, found at rule 0"}},
	{Name: "ap selector and targetRef", Doc: doc("AuthorizationPolicy", `{selector: {matchLabels: {app: a}}, targetRef: {kind: Service, group: "", name: a}, rules: [{}]}`),
		Errs: []string{"spec: only one of targetRefs or workloadSelector can be set"}},
	{Name: "ap path template not last", Doc: doc("AuthorizationPolicy", `{rules: [{to: [{operation: {paths: ["/a/{**}/b/{*}"]}}]}]}`),
		Errs: []string{"spec.rules[0].to[0].operation.paths: invalid or unsupported path a/{**}/b/{*}, found in paths. {**} is not the last operator"}},
	{Name: "ap dry-run that is not a boolean", Doc: docMeta("AuthorizationPolicy", `{name: x, namespace: default, annotations: {istio.io/dry-run: maybe}}`, `{rules: [{}]}`),
		Errs: []string{`metadata.annotations[istio.io/dry-run]: annotation istio.io/dry-run must be true or false, got "maybe"`}},
	{Name: "ap targetRef to a Deployment", Doc: doc("AuthorizationPolicy", `{targetRef: {kind: Deployment, group: apps, name: a}, rules: [{}]}`),
		Errs: []string{"spec.targetRef: targetRef must be to a core/Service"}},

	// RequestAuthentication
	{Name: "ra rule without issuer", Doc: doc("RequestAuthentication", `{jwtRules: [{audiences: [a]}]}`),
		Errs: []string{"spec.jwtRules[0]: issuer or jwksUri must be non-empty string"}},
	{Name: "ra jwks uri over ftp", Doc: doc("RequestAuthentication", `{jwtRules: [{issuer: i, jwksUri: "ftp://example.com/jwks"}]}`),
		Errs: []string{`spec.jwtRules[0].jwksUri: URI scheme "ftp" is not supported`}},
	{Name: "ra jwks that is not json", Doc: doc("RequestAuthentication", `{jwtRules: [{issuer: i, jwks: "not json"}]}`),
		Errs: []string{"spec.jwtRules[0].jwks: jwks parse error: not a JSON object"}},
	{Name: "ra claim to a bad header", Doc: doc("RequestAuthentication", `{jwtRules: [{issuer: i, outputClaimToHeaders: [{header: "x jwt", claim: sub}]}]}`),
		Errs: []string{"spec.jwtRules[0].outputClaimToHeaders[0].header: header name x jwt is not a valid header name"}},
	{Name: "ra timeout in microseconds", Doc: doc("RequestAuthentication", `{jwtRules: [{issuer: i, timeout: 1500us}]}`),
		Errs: []string{"spec.jwtRules[0].timeout: only durations to ms precision are supported"}},

	// Telemetry
	{Name: "telemetry sampling over 100", Doc: doc("Telemetry", `{tracing: [{randomSamplingPercentage: 101}]}`),
		Errs: []string{"spec.tracing[0].randomSamplingPercentage: randomSamplingPercentage must be in range [0.0, 100.0]"}},
	{Name: "telemetry provider without name", Doc: doc("Telemetry", `{accessLogging: [{providers: [{name: ""}]}]}`),
		Errs: []string{"spec.accessLogging[0].providers[0].name: providers.name may not be empty"}},
	{Name: "telemetry filter that is not CEL", Doc: doc("Telemetry", `{accessLogging: [{filter: {expression: "response.code >="}}]}`),
		Errs: []string{"spec.accessLogging[0].filter.expression: must be a valid CEL expression"}},
	{Name: "telemetry upsert without value", Doc: doc("Telemetry", `{metrics: [{overrides: [{tagOverrides: {response_code: {operation: UPSERT}}}]}]}`),
		Errs: []string{"spec.metrics[0].overrides[0].tagOverrides[response_code].value: tagOverrides.value must be set when operation is UPSERT"}},

	// Metadata
	{Name: "always-reject annotation", Doc: docMeta("Gateway", `{name: x, namespace: default, annotations: {internal.istio.io/webhook-always-reject: "true"}}`, `{servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]}`),
		Errs: []string{`metadata.annotations[internal.istio.io/webhook-always-reject]: "internal.istio.io/webhook-always-reject" annotation found, rejecting`}},
}

// Valid holds objects that must be accepted.
var Valid = []Case{
	{Name: "vs weights over 100 are relative", Doc: doc("VirtualService", `{hosts: [r], http: [{route: [{destination: {host: r, subset: a}, weight: 150}, {destination: {host: r, subset: b}, weight: 50}]}]}`),
		Warns: []string{"spec.http[0].route: weights sum to 200, not 100"}},
	{Name: "vs delegate", Doc: doc("VirtualService", `{http: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: r}}]}]}`)},
	{Name: "vs root delegating", Doc: doc("VirtualService", `{hosts: [r], http: [{match: [{uri: {prefix: /a}}], delegate: {name: d, namespace: default}}]}`)},
	{Name: "vs tls passthrough route", Doc: doc("VirtualService", `{hosts: ["*.example.com"], gateways: [istio-system/egress], tls: [{match: [{sniHosts: [a.example.com], port: 443}], route: [{destination: {host: a.example.com, port: {number: 443}}}]}]}`)},
	{Name: "vs tcp route", Doc: doc("VirtualService", `{hosts: [db], tcp: [{match: [{port: 3306}], route: [{destination: {host: db, port: {number: 3306}}}]}]}`)},
	{Name: "vs redirect and direct response", Doc: doc("VirtualService", `{hosts: [r], http: [{match: [{uri: {exact: /old}}], redirect: {uri: /new, redirectCode: 301}}, {directResponse: {status: 404, body: {string: gone}}}]}`)},
	{Name: "vs header manipulation with variables", Doc: doc("VirtualService", `{hosts: [r], http: [{headers: {request: {set: {x-host: "%HOSTNAME%", x-pct: "100%%"}, remove: [x-debug]}, response: {add: {x-served-by: meshd}}}, route: [{destination: {host: r}}]}]}`)},
	{Name: "vs jwt claim routing on a gateway", Doc: doc("VirtualService", `{hosts: [a.example.com], gateways: [istio-system/ingress], http: [{match: [{headers: {"@request.auth.claims.group": {exact: admin}}}], route: [{destination: {host: r}}]}]}`)},
	{Name: "vs cors", Doc: doc("VirtualService", `{hosts: [r], http: [{corsPolicy: {allowOrigins: [{exact: "https://a.example.com"}, {regex: "https://.*\\.example\\.com"}], allowMethods: [GET, POST], allowHeaders: [authorization, "*"], maxAge: 24h}, route: [{destination: {host: r}}]}]}`)},
	{Name: "vs mirrors", Doc: doc("VirtualService", `{hosts: [r], http: [{mirrors: [{destination: {host: r2}, percentage: {value: 25}}], route: [{destination: {host: r}}]}]}`)},
	{Name: "dr with tls origination and locality failover", Doc: doc("DestinationRule", `{host: "*.example.com", trafficPolicy: {tls: {mode: SIMPLE, sni: a.example.com}, outlierDetection: {consecutive5xxErrors: 3, interval: 5s}, loadBalancer: {simple: LEAST_REQUEST, localityLbSetting: {enabled: true, failover: [{from: us-east, to: us-west}]}}}}`)},
	{Name: "dr consistent hash ring", Doc: doc("DestinationRule", `{host: r, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 1024}}}}}`)},
	{Name: "gw mutual tls with credential", Doc: doc("Gateway", `{servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: ["*/a.example.com"], tls: {mode: MUTUAL, credentialName: a-cert}}]}`)},
	{Name: "gw auto passthrough", Doc: doc("Gateway", `{servers: [{port: {number: 15443, name: tls, protocol: TLS}, hosts: ["*.local"], tls: {mode: AUTO_PASSTHROUGH}}]}`)},
	{Name: "se static with endpoints", Doc: doc("ServiceEntry", `{hosts: [db.internal], addresses: [192.0.2.50], ports: [{number: 5432, name: tcp-pg, protocol: TCP}], location: MESH_INTERNAL, resolution: STATIC, endpoints: [{address: 192.0.2.51, labels: {role: primary}}]}`)},
	{Name: "se dns wildcard with an endpoint", Doc: doc("ServiceEntry", `{hosts: ["*.api.example.com"], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS, endpoints: [{address: gw.example.com}]}`),
		Warns: []string{}},
	{Name: "sidecar ingress and egress", Doc: doc("Sidecar", `{workloadSelector: {labels: {app: r}}, ingress: [{port: {number: 9080, name: http, protocol: HTTP}, defaultEndpoint: "127.0.0.1:9080"}], egress: [{port: {number: 3306, name: mysql, protocol: MYSQL}, hosts: ["*/db.internal"]}, {hosts: ["istio-system/*", "./*"]}]}`)},
	{Name: "ap allow nothing", Doc: doc("AuthorizationPolicy", `{}`)},
	{Name: "ap deny with an empty rule", Doc: doc("AuthorizationPolicy", `{action: DENY, rules: [{}]}`)},
	{Name: "ap custom", Doc: doc("AuthorizationPolicy", `{action: CUSTOM, provider: {name: ext-authz}, rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]}`),
		Warns: []string{}},
	{Name: "ap dry run", Doc: docMeta("AuthorizationPolicy", `{name: x, namespace: default, annotations: {istio.io/dry-run: "true"}}`, `{action: DENY, rules: [{to: [{operation: {ports: ["8080"]}}]}]}`)},
	{Name: "pa permissive", Doc: doc("PeerAuthentication", `{mtls: {mode: PERMISSIVE}}`)},
	{Name: "v1beta1 and v1alpha3 objects", Doc: "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}]}]}\n"},
}
