/*
 * influx_query.h - the InfluxDB 1.x /query statements clients send at start, answered without
 * storing anything.
 *
 * ferryd takes InfluxDB line protocol on /write, so clients written for InfluxDB (Telegraf's
 * influxdb output, the python `influxdb` client, most application libraries) point at it. Many of
 * them first send `CREATE DATABASE` to /query and stop when that fails. ferryd forwards data; it
 * does not query it, so /query answers only the set-up statements, the way InfluxDB 1.8 does:
 *
 *   CREATE DATABASE [IF NOT EXISTS] name [WITH ...]    {"statement_id":N}
 *   DROP DATABASE [IF EXISTS] name                     {"statement_id":N}
 *   SHOW DATABASES                                     series "databases", column "name"
 *   SHOW RETENTION POLICIES [ON name]                  series with autogen, duration "0s",
 *                                                      shardGroupDuration "168h0m0s", replicaN 1,
 *                                                      default true
 *   CREATE RETENTION POLICY ... / ALTER RETENTION POLICY ...   {"statement_id":N}
 *
 * The database names CREATE DATABASE gave are remembered in memory (at most 64) only so that SHOW
 * DATABASES lists them, as clients that check before creating expect; nothing is written, every
 * /write is accepted whatever its db. Any other statement (SELECT, SHOW MEASUREMENTS...) gets a
 * statement error saying ferryd does not answer queries; a statement that does not parse makes
 * the whole request 400 {"error":"error parsing query: ..."} as InfluxDB does.
 */
#ifndef FERRY_ENGINE_INFLUX_QUERY_H
#define FERRY_ENGINE_INFLUX_QUERY_H

#include <stddef.h>

struct ferry_buf;
struct influx_query;

/* Longest q accepted (bytes); longer is a 400. */
#define INFLUX_QUERY_MAX_BYTES (64 * 1024)
/* Databases remembered for SHOW DATABASES. */
#define INFLUX_QUERY_MAX_DATABASES 64

/* NULL when out of memory. */
struct influx_query *influx_query_new(void);
void influx_query_free(struct influx_query *q);

/*
 * Answers the statements in text[0, len) (separated by ';') into out (appended: one JSON object,
 * valid UTF-8) and sets *http_status to 200 or 400. Returns 0, or -1 when out of memory.
 */
int influx_query_answer(struct influx_query *q, const char *text, size_t len, struct ferry_buf *out,
                        int *http_status) __attribute__((warn_unused_result));

#endif
