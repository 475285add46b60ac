#!/usr/bin/env python3
"""Writes the Grafana dashboards in grafana/ (edit here, run, commit the JSON)."""
import json, os
OUT=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'grafana')
RI='$__rate_interval'
def panel(pid, title, exprs, unit='short', kind='timeseries', x=0, y=0, w=12, h=8, desc=''):
    return {
        "id": pid, "type": kind, "title": title, "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(65+i), "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "expr": e, "legendFormat": l}
            for i, (e, l) in enumerate(exprs)
        ],
    }
def dash(uid, title, panels, tags):
    # lay out two per row
    for i, p in enumerate(panels):
        p["gridPos"]["x"] = (i % 2) * 12
        p["gridPos"]["y"] = (i // 2) * 8
    return {
        "uid": uid, "title": title, "tags": ["tms"] + tags, "schemaVersion": 39, "version": 1,
        "editable": True, "timezone": "browser", "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        ]},
        "annotations": {"list": []},
        "panels": [dict(p, id=i+1) for i, p in enumerate(panels)],
    }
P=panel
boards = {
 "tms-overview": ("TMS / Overview", ["overview"], [
   P(0,"Runs finished per second by status",[(f'sum by (status) (rate(tms_runs_total[{RI}]))',"{{status}}")],"ops"),
   P(0,"Run failure rate",[(f'sum(rate(tms_runs_total{{status=~"failed|timed_out"}}[{RI}])) / sum(rate(tms_runs_total[{RI}]))',"failure rate")],"percentunit"),
   P(0,"Queue by state",[('max by (state) (tms_queue_jobs)',"{{state}}")]),
   P(0,"Oldest waiting run",[('max(tms_queue_oldest_job_age_seconds)',"age")],"s"),
   P(0,"Processes up",[('sum by (job) (up{job=~"tms-api|tms-worker"})',"{{job}}")]),
   P(0,"Components reachable",[('min by (component) (tms_component_up)',"{{component}}")]),
   P(0,"API requests per second",[(f'sum by (status) (rate(tms_http_requests_total{{job="tms-api"}}[{RI}]))',"{{status}}")],"reqps"),
   P(0,"API p99 latency",[(f'histogram_quantile(0.99, sum by (le) (rate(tms_http_request_duration_seconds_bucket{{job="tms-api",route="/graphql"}}[{RI}])))',"p99")],"s"),
 ]),
 "tms-runs": ("TMS / Runs and steps", ["runs"], [
   P(0,"Runs finished per second by status",[(f'sum by (status) (rate(tms_runs_total[{RI}]))',"{{status}}")],"ops"),
   P(0,"Run duration p50 / p95",[(f'histogram_quantile(0.5, sum by (le) (rate(tms_run_duration_seconds_bucket[{RI}])))',"p50"),(f'histogram_quantile(0.95, sum by (le) (rate(tms_run_duration_seconds_bucket[{RI}])))',"p95")],"s"),
   P(0,"Steps finished per second by status",[(f'sum by (status) (rate(tms_steps_total[{RI}]))',"{{status}}")],"ops"),
   P(0,"Step duration p50 / p95 by status",[(f'histogram_quantile(0.5, sum by (le, status) (rate(tms_step_duration_seconds_bucket[{RI}])))',"p50 {{status}}"),(f'histogram_quantile(0.95, sum by (le, status) (rate(tms_step_duration_seconds_bucket[{RI}])))',"p95 {{status}}")],"s"),
   P(0,"Cache hit ratio",[(f'sum(rate(tms_cache_lookups_total{{result="hit"}}[{RI}])) / sum(rate(tms_cache_lookups_total[{RI}]))',"hit ratio")],"percentunit"),
   P(0,"Step failure rate",[(f'sum(rate(tms_steps_total{{status="failed"}}[{RI}])) / sum(rate(tms_steps_total[{RI}]))',"failed")],"percentunit"),
 ]),
 "tms-queue": ("TMS / Queue and workers", ["queue"], [
   P(0,"Queue by state",[('max by (state) (tms_queue_jobs)',"{{state}}")]),
   P(0,"Oldest waiting run",[('max(tms_queue_oldest_job_age_seconds)',"age")],"s"),
   P(0,"Worker slots",[('sum by (state) (tms_worker_slots{job="tms-worker"})',"{{state}}")]),
   P(0,"Slot utilisation by worker",[('sum by (instance) (tms_worker_slots{job="tms-worker",state="busy"}) / sum by (instance) (tms_worker_slots{job="tms-worker"})',"{{instance}}")],"percentunit"),
   P(0,"Workers up",[('up{job="tms-worker"}',"{{instance}}")]),
   P(0,"Database pool",[('sum by (job, state) (tms_db_pool_connections)',"{{job}} {{state}}")]),
   P(0,"Worker resident memory",[('process_resident_memory_bytes{job="tms-worker"}',"{{instance}}")],"bytes"),
   P(0,"Worker CPU",[(f'rate(process_cpu_seconds_total{{job="tms-worker"}}[{RI}])',"{{instance}}")],"percentunit"),
 ]),
 "tms-api": ("TMS / API", ["api"], [
   P(0,"Requests per second by route",[(f'sum by (route, method) (rate(tms_http_requests_total{{job="tms-api"}}[{RI}]))',"{{method}} {{route}}")],"reqps"),
   P(0,"Latency p50 / p99 by route",[(f'histogram_quantile(0.5, sum by (le, route) (rate(tms_http_request_duration_seconds_bucket{{job="tms-api"}}[{RI}])))',"p50 {{route}}"),(f'histogram_quantile(0.99, sum by (le, route) (rate(tms_http_request_duration_seconds_bucket{{job="tms-api"}}[{RI}])))',"p99 {{route}}")],"s"),
   P(0,"HTTP 5xx ratio",[(f'sum(rate(tms_http_requests_total{{job="tms-api",status=~"5.."}}[{RI}])) / sum(rate(tms_http_requests_total{{job="tms-api"}}[{RI}]))',"5xx")],"percentunit"),
   P(0,"GraphQL operations by code",[(f'sum by (code) (rate(tms_graphql_operations_total[{RI}]))',"{{code}}")],"ops"),
   P(0,"Top GraphQL operations",[(f'topk(10, sum by (type, name) (rate(tms_graphql_operations_total[{RI}])))',"{{type}} {{name}}")],"ops"),
   P(0,"Open subscriptions",[('sum(tms_subscriptions_open)',"open")]),
   P(0,"Event delivery p99",[(f'histogram_quantile(0.99, sum by (le) (rate(tms_event_delivery_seconds_bucket[{RI}])))',"p99")],"s"),
   P(0,"API resident memory",[('process_resident_memory_bytes{job="tms-api"}',"{{instance}}")],"bytes"),
 ]),
 "tms-security": ("TMS / Security", ["security"], [
   P(0,"Security events by action and outcome",[(f'sum by (action, outcome) (rate(tms_auth_events_total[{RI}]))',"{{action}} {{outcome}}")],"ops"),
   P(0,"Failed logins per minute",[(f'sum(rate(tms_auth_events_total{{action="auth.login",outcome="failure"}}[{RI}])) * 60',"failed logins")]),
   P(0,"Access denied per minute",[(f'sum(rate(tms_auth_events_total{{action="access.denied"}}[{RI}])) * 60',"denied")]),
   P(0,"Refresh-token reuse (last hour)",[('sum(increase(tms_auth_events_total{action="auth.token_reuse"}[1h]))',"reuse")],kind="stat"),
   P(0,"Unauthenticated / forbidden GraphQL operations",[(f'sum by (code) (rate(tms_graphql_operations_total{{code=~"UNAUTHENTICATED|FORBIDDEN"}}[{RI}]))',"{{code}}")],"ops"),
   P(0,"Query-limit refusals",[(f'sum(rate(tms_graphql_operations_total{{code="QUERY_LIMIT"}}[{RI}]))',"refused")],"ops"),
 ]),
}
for uid,(title,tags,panels) in boards.items():
    with open(os.path.join(OUT, uid+'.json'),'w') as f:
        json.dump(dash(uid,title,panels,tags), f, indent=2); f.write('\n')
print('ok')
