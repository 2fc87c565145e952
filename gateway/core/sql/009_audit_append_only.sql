-- Schema version 9: the database itself refuses to change an audit log entry (a trigger on
-- UPDATE), whoever connects. Entries are only added, and removed only by retention when their
-- term ([retention] audit) has passed. The statements differ per backend: see _DIALECT in store.py.
{audit_guard_function};
{audit_guard_trigger};
