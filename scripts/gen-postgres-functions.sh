#!/usr/bin/env bash
# Regenerates shared/src/sql/functions/postgres_pure.txt from a PostgreSQL server's catalog:
# every function, aggregate and window function declared IMMUTABLE or STABLE, plus a short list of
# VOLATILE ones that only read, minus those that run SQL text or touch server files.
# Usage: scripts/gen-postgres-functions.sh [psql connection args]   (default: -h 127.0.0.1 -U postgres)
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@"); [ ${#args[@]} -gt 0 ] || args=(-h 127.0.0.1 -U postgres)
harmless_volatile="'random','clock_timestamp','timeofday','gen_random_uuid','currval','lastval',
'pg_relation_size','pg_table_size','pg_total_relation_size','pg_indexes_size','pg_database_size',
'pg_tablespace_size','pg_is_in_recovery','pg_blocking_pids','pg_lock_status','pg_partition_tree',
'pg_partition_ancestors','pg_jit_available','pg_sequence_last_value','pg_xact_status','txid_status',
'pg_current_wal_lsn','pg_current_wal_insert_lsn','pg_current_wal_flush_lsn','pg_last_wal_receive_lsn',
'pg_last_wal_replay_lsn','pg_last_xact_replay_timestamp','pg_is_wal_replay_paused',
'pg_get_wal_replay_pause_state','pg_xact_commit_timestamp','pg_last_committed_xact','current_query',
'pg_notification_queue_usage','pg_safe_snapshot_blocking_pids','pg_get_backend_memory_contexts',
'pg_get_shmem_allocations','pg_control_checkpoint','pg_control_system','pg_control_init',
'pg_control_recovery','pg_get_multixact_members','pg_prepared_xact','pg_collation_actual_version',
'pg_database_collation_actual_version','pg_get_wal_resource_managers','pg_stat_have_stats',
'pg_show_replication_origin_status'"
psql "${args[@]}" -Atc "
select distinct lower(proname) from pg_proc
where (provolatile in ('i','s') or proname in ($harmless_volatile))
  and prokind in ('f','a','w')
  and proname !~ '(handler|validator)\$'
  and proname !~ '^(binary_upgrade|pg_ls_|pg_stat_reset|pg_replication_origin|pg_read|pg_file|ts_stat|ts_rewrite)'
  and proname !~ '(to_xml|to_xmlschema|to_xml_and_xmlschema)\$'
union
-- Built-in type names: \`regrole('x')\`, \`tsquery('a')\` are casts written as calls.
select distinct lower(typname) from pg_type where typnamespace = 'pg_catalog'::regnamespace and typname !~ '^_'
union
-- Built-ins added after PostgreSQL 15 (16 to 18), all immutable, stable or harmless.
select unnest(string_to_array('pg_input_is_valid pg_input_error_info array_sample array_shuffle any_value random_normal date_add date_subtract erf erfc system_user to_bin to_oct uuid_extract_timestamp uuid_extract_version pg_basetype pg_column_toast_chunk_id crc32 crc32c array_reverse array_sort casefold gamma lgamma uuidv4 uuidv7 unistr xmltext json_array json_object json_arrayagg json_objectagg json_scalar json_serialize json_exists json_query json_value merge_action pg_get_acl has_largeobject_privilege pg_split_walfile_name pg_column_compression', ' '))
order by 1" > shared/src/sql/functions/postgres_pure.txt
wc -l shared/src/sql/functions/postgres_pure.txt
