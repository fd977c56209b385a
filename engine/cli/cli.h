/*
 * cli.h - subcommands of the `ferry` command-line tool.
 *
 * `ferry` is a thin front end: engine/cli/ferry.c parses the first word and hands the remaining
 * arguments to one of these functions. Each lives in its own file (cmd_<name>.c) and returns the
 * process exit status: 0 success, 1 failure (a message on stderr says what and where), 2 usage.
 */
#ifndef FERRY_ENGINE_CLI_H
#define FERRY_ENGINE_CLI_H

/* ferry journal stats|tail|dump DATA_DIR [--json] (cmd_journal.c) */
int cli_journal(int argc, char **argv);
/* ferry dict train ... (cmd_dict.c) */
int cli_dict(int argc, char **argv);
/* ferry put 'line protocol' (cmd_put.c) */
int cli_put(int argc, char **argv);
/* ferry log [--level L] [--source S] 'message' (cmd_log.c) */
int cli_log(int argc, char **argv);
/* ferry status [--json] (cmd_status.c) */
int cli_status(int argc, char **argv);
/* ferry update status|... (cmd_update.c) */
int cli_update(int argc, char **argv);
/* ferry release create|sign|verify ... (cmd_release.c) */
int cli_release(int argc, char **argv);

#endif
