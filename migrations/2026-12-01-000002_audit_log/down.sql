DROP TABLE audit_log;
DROP FUNCTION audit_log_refuse_change();
DROP TYPE audit_outcome;
DROP TYPE audit_action;
