/*
 * keyid.c - `ratectl key-id`: the id that a ratectl.conf(5) `key =` rule
 * names, of an API key read from standard input.
 *
 * The key comes from standard input and never from the command line,
 * where ps(1), /proc/PID/cmdline and shell history would show it.  On a
 * terminal it is read with echo off.  The key is never printed, not even
 * in an error, and its bytes are wiped before the command returns.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "ratectl_http.h"

/* Provider keys are 32 to a few hundred bytes; a token in a JWT a few
 * KiB.  More than this is a file given by mistake, not a key. */
#define KEY_MAX 4096

/* Up to cap bytes of fd into buf (stopping at a newline when line is
 * set): the count, or -errno.  Reads one more than KEY_MAX so that an
 * overlong key is seen as such rather than cut. */
static ssize_t read_key(int fd, char *buf, size_t cap, int line)
{
	size_t n = 0;
	ssize_t k;

	while (n < cap) {
		k = read(fd, buf + n, line ? 1 : cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		n += (size_t)k;
		if (line && buf[n - 1] == '\n')
			break;
	}
	return (ssize_t)n;
}

/* On a terminal: prompt on stderr, read one line without echo. */
static ssize_t read_tty(char *buf, size_t cap)
{
	struct termios old, quiet;
	ssize_t n;

	if (tcgetattr(STDIN_FILENO, &old) != 0)
		return read_key(STDIN_FILENO, buf, cap, 1);
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	fputs("API key (not echoed): ", stderr);
	fflush(stderr);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	n = read_key(STDIN_FILENO, buf, cap, 1);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fputc('\n', stderr);
	return n;
}

int cmd_key_id(cli *c, int argc, char **argv)
{
	char buf[KEY_MAX + 2], id[RATECTL_HTTP_KEY_ID_LEN + 1];
	ssize_t n;
	size_t len;
	int rc = CLI_USAGE;

	/* No getopt here: an argument may be the key itself, pasted where
	 * it should not be, and getopt's messages would repeat it. */
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
		return cli_help(c);
	if (argc != 1)
		return cli_usage(c, "takes no arguments: the key is read from standard "
		                 "input (an argument would show in ps)");
	n = isatty(STDIN_FILENO) ? read_tty(buf, sizeof buf - 1) :
		read_key(STDIN_FILENO, buf, sizeof buf - 1, 0);
	if (n < 0) {
		cli_err(c, "reading standard input: %s", strerror((int)-n));
		rc = CLI_ERROR;
		goto out;
	}
	len = (size_t)n;
	/* One line ending, as `echo KEY |` and a file with a final newline
	 * give; the id rule itself also drops surrounding blanks. */
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len > KEY_MAX) {
		cli_err(c, "the key on standard input is longer than %d bytes: "
		        "give the key alone, not a file", KEY_MAX);
		goto out;
	}
	if (memchr(buf, '\n', len) || memchr(buf, '\0', len)) {
		cli_err(c, "standard input holds more than one line (or a NUL "
		        "byte): give one key at a time");
		goto out;
	}
	if (ratectl_http_key_id(id, buf, len) != 0) {
		cli_err(c, "no key on standard input (empty, blank or a bare "
		        "'Bearer'); usage: printf %%s \"$KEY\" | ratectl key-id");
		goto out;
	}
	printf("%s\n", id);
	rc = CLI_OK;
out:
	explicit_bzero(buf, sizeof buf);
	return rc;
}
