/*
 * clock.c - the handle's clock: CLOCK_BOOTTIME (host-wide, never goes back,
 * counts suspend, which the provider's clock does too), or an injected one.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

int64_t ratectl_now(const ratectl *h)
{
	struct timespec ts;

	if (h && h->clock.now)
		return h->clock.now(h->clock.ctx);
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts_ns(&ts);
}

int64_t ratectl__realtime(const ratectl *h)
{
	struct timespec ts;

	if (h->clock.realtime)
		return h->clock.realtime(h->clock.ctx);
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts_ns(&ts);
}

/* Absolute sleep on the same clock as ratectl_now(): no drift from
 * converting to relative times, and exact to the kernel's timer slack. */
int ratectl__sleep_until(const ratectl *h, int64_t t)
{
	struct timespec ts;
	int rc;

	if (h->clock.sleep_until)
		return h->clock.sleep_until(h->clock.ctx, t);
	if (t <= 0)
		return 0;
	ts.tv_sec = t / 1000000000;
	ts.tv_nsec = t % 1000000000;
	rc = clock_nanosleep(CLOCK_BOOTTIME, TIMER_ABSTIME, &ts, NULL);
	return rc == 0 ? 0 : -rc;
}

/* The kernel's random id of this boot, or "" when /proc is not there (then
 * a reboot cannot be told and stored times are used as they are). */
void ratectl__boot_id(const ratectl *h, char out[RC_BOOT_ID_LEN])
{
	ssize_t n = 0;
	int fd;

	memset(out, 0, RC_BOOT_ID_LEN);
	if (h->clock.boot_id) {
		strncpy(out, h->clock.boot_id, RC_BOOT_ID_LEN - 1);
		return;
	}
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, out, RC_BOOT_ID_LEN - 1);
	close(fd);
	if (n <= 0) {
		out[0] = '\0';
		return;
	}
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
}
