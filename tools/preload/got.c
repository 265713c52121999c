/*
 * got.c - the loaded objects of the process, read through
 * dl_iterate_phdr(), and redirection of their GOT entries.
 *
 * Why: an object loaded with RTLD_DEEPBIND (PHP loads its extensions so)
 * looks symbols up in its own dependencies before the global scope, so
 * its calls to libcurl never reach a preloaded definition.  The dynamic
 * linker has already written, or will write lazily, the addresses it
 * chose into the object's GOT; writing ours there instead is what
 * interposition would have done.  The same mechanism sends an object
 * that uses a second, different libcurl back to its own (see curlapi.c),
 * and gives a program that dlopen()s libcurl our dlsym().
 *
 * Only JUMP_SLOT and GLOB_DAT relocations are touched, only inside the
 * object's own writable or RELRO segments, and only on the architectures
 * below; elsewhere shim_obj_patch() returns -1 and the caller says so.
 */
#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shim.h"

#if defined(__x86_64__)
#define R_SLOT R_X86_64_JUMP_SLOT
#define R_DATA R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define R_SLOT R_AARCH64_JUMP_SLOT
#define R_DATA R_AARCH64_GLOB_DAT
#elif defined(__i386__)
#define R_SLOT R_386_JMP_SLOT
#define R_DATA R_386_GLOB_DAT
#elif defined(__arm__)
#define R_SLOT R_ARM_JUMP_SLOT
#define R_DATA R_ARM_GLOB_DAT
#endif

#if __ELF_NATIVE_CLASS == 64
#define R_SYM(i) ELF64_R_SYM(i)
#define R_TYPE(i) ELF64_R_TYPE(i)
#else
#define R_SYM(i) ELF32_R_SYM(i)
#define R_TYPE(i) ELF32_R_TYPE(i)
#endif

/* ---- enumeration ---------------------------------------------------------- */

struct walk {
	struct shim_obj *out;
	size_t cap;
	size_t n;
	unsigned long long adds;
};

static int walk_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct walk *w = arg;

	(void)size;
	w->adds = info->dlpi_adds;
	if (w->n < w->cap) {
		struct shim_obj *o = &w->out[w->n];

		o->base = (uintptr_t)info->dlpi_addr;
		o->name = info->dlpi_name ? info->dlpi_name : "";
		o->phdr = info->dlpi_phdr;
		o->phnum = info->dlpi_phnum;
	}
	w->n++;
	return 0;
}

size_t shim_objects(struct shim_obj *out, size_t cap, unsigned long long *adds)
{
	struct walk w = { out, cap, 0, 0 };

	dl_iterate_phdr(walk_cb, &w);
	if (adds)
		*adds = w.adds;
	return w.n;
}

/* Is addr inside one of o's loaded segments (with write access when
 * writable is set, counting RELRO as writable: we unprotect it)? */
static int in_segment(const struct shim_obj *o, uintptr_t addr, size_t len,
                      int writable)
{
	unsigned i;

	for (i = 0; i < o->phnum; i++) {
		const ElfW(Phdr) *ph = &o->phdr[i];
		uintptr_t s = o->base + ph->p_vaddr;

		if (ph->p_type != PT_LOAD || addr < s || addr + len > s + ph->p_memsz)
			continue;
		if (!writable || (ph->p_flags & PF_W))
			return 1;
	}
	return 0;
}

int shim_obj_contains(const struct shim_obj *o, const void *addr)
{
	return in_segment(o, (uintptr_t)addr, 1, 0);
}

/* ---- the dynamic section -------------------------------------------------- */

struct dyn {
	const char *strtab;
	size_t strsz;
	const ElfW(Sym) *symtab;
	uintptr_t jmprel, rela, rel;
	size_t pltrelsz, relasz, relsz;
	int pltrel;
	const ElfW(Dyn) *d;
};

/* glibc rewrites most d_ptr values to run-time addresses, other loaders
 * and the vDSO don't: an address below the base is still a file offset. */
static uintptr_t dptr(const struct shim_obj *o, ElfW(Addr) p)
{
	return (uintptr_t)p < o->base ? o->base + (uintptr_t)p : (uintptr_t)p;
}

static int dyn_load(const struct shim_obj *o, struct dyn *y)
{
	const ElfW(Dyn) *d = NULL;
	unsigned i;

	memset(y, 0, sizeof *y);
	for (i = 0; i < o->phnum; i++)
		if (o->phdr[i].p_type == PT_DYNAMIC)
			d = (const ElfW(Dyn) *)(o->base + o->phdr[i].p_vaddr);
	if (!d)
		return -1;
	y->d = d;
	for (; d->d_tag != DT_NULL; d++) {
		switch (d->d_tag) {
		case DT_STRTAB: y->strtab = (const char *)dptr(o, d->d_un.d_ptr); break;
		case DT_STRSZ: y->strsz = d->d_un.d_val; break;
		case DT_SYMTAB: y->symtab = (const ElfW(Sym) *)dptr(o, d->d_un.d_ptr); break;
		case DT_JMPREL: y->jmprel = dptr(o, d->d_un.d_ptr); break;
		case DT_PLTRELSZ: y->pltrelsz = d->d_un.d_val; break;
		case DT_PLTREL: y->pltrel = (int)d->d_un.d_val; break;
		case DT_RELA: y->rela = dptr(o, d->d_un.d_ptr); break;
		case DT_RELASZ: y->relasz = d->d_un.d_val; break;
		case DT_REL: y->rel = dptr(o, d->d_un.d_ptr); break;
		case DT_RELSZ: y->relsz = d->d_un.d_val; break;
		default: break;
		}
	}
	return y->strtab && y->symtab ? 0 : -1;
}

static const char *dyn_str(const struct dyn *y, size_t off)
{
	return off < y->strsz ? y->strtab + off : NULL;
}

const char *shim_obj_needed(const struct shim_obj *o, const char *prefix)
{
	const ElfW(Dyn) *d;
	struct dyn y;

	if (dyn_load(o, &y) != 0)
		return NULL;
	for (d = y.d; d->d_tag != DT_NULL; d++) {
		const char *s = d->d_tag == DT_NEEDED ? dyn_str(&y, d->d_un.d_val) : NULL;

		if (s && strncmp(s, prefix, strlen(prefix)) == 0)
			return s;
	}
	return NULL;
}

int shim_obj_has_search_path(const struct shim_obj *o, int *runpath)
{
	const ElfW(Dyn) *d;
	struct dyn y;
	int found = 0;

	*runpath = 0;
	if (dyn_load(o, &y) != 0)
		return 0;
	for (d = y.d; d->d_tag != DT_NULL; d++) {
		if (d->d_tag == DT_RUNPATH)
			*runpath = found = 1;
		else if (d->d_tag == DT_RPATH)
			found = 1;
	}
	return found;
}

/* ---- patching ------------------------------------------------------------- */

#ifdef R_SLOT

static int in_relro(const struct shim_obj *o, uintptr_t addr, uintptr_t *s,
                    uintptr_t *e)
{
	unsigned i;

	for (i = 0; i < o->phnum; i++) {
		const ElfW(Phdr) *ph = &o->phdr[i];

		if (ph->p_type != PT_GNU_RELRO)
			continue;
		*s = o->base + ph->p_vaddr;
		*e = *s + ph->p_memsz;
		if (addr >= *s && addr < *e)
			return 1;
	}
	return 0;
}

/* Write one GOT entry; RELRO pages are unprotected for the write only. */
static int got_write(const struct shim_obj *o, uintptr_t addr, void *to)
{
	uintptr_t s, e, page = (uintptr_t)sysconf(_SC_PAGESIZE);
	void **slot = (void **)addr;
	int relro;

	if (!in_segment(o, addr, sizeof(void *), 1))
		return -1;
	if (__atomic_load_n(slot, __ATOMIC_RELAXED) == to)
		return 0;
	relro = in_relro(o, addr, &s, &e);
	s = addr & ~(page - 1);
	if (relro && mprotect((void *)s, page, PROT_READ | PROT_WRITE) != 0)
		return -1;
	__atomic_store_n(slot, to, __ATOMIC_RELEASE);
	if (relro)
		mprotect((void *)s, page, PROT_READ);
	return 1;
}

static int want(const struct shim_redirect *r, size_t n, const char *name)
{
	size_t i;

	for (i = 0; name && i < n; i++)
		if (strcmp(r[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Walk a relocation table of entries of size esz (Rel or Rela). */
static int patch_table(const struct shim_obj *o, const struct dyn *y,
                       uintptr_t tab, size_t size, size_t esz, int rela,
                       const struct shim_redirect *r, size_t n)
{
	size_t off;
	int changed = 0;

	for (off = 0; tab && off + esz <= size; off += esz) {
		const ElfW(Rel) *rel = (const ElfW(Rel) *)(tab + off);
		unsigned long type = R_TYPE(rel->r_info);
		const ElfW(Sym) *sym;
		int i, w;

		if (type != R_SLOT && type != R_DATA)
			continue;
		if (rela && ((const ElfW(Rela) *)rel)->r_addend != 0)
			continue;
		sym = &y->symtab[R_SYM(rel->r_info)];
		if ((i = want(r, n, dyn_str(y, sym->st_name))) < 0)
			continue;
		if ((w = got_write(o, o->base + rel->r_offset, r[i].to)) < 0)
			return -1;
		changed += w;
	}
	return changed;
}

int shim_obj_patch(const struct shim_obj *o, const struct shim_redirect *r,
                   size_t n)
{
	struct dyn y;
	int a, b, c;
	size_t pltesz;

	if (dyn_load(o, &y) != 0)
		return -1;
	pltesz = y.pltrel == DT_RELA ? sizeof(ElfW(Rela)) : sizeof(ElfW(Rel));
	a = patch_table(o, &y, y.jmprel, y.pltrelsz, pltesz, y.pltrel == DT_RELA, r, n);
	b = patch_table(o, &y, y.rela, y.relasz, sizeof(ElfW(Rela)), 1, r, n);
	c = patch_table(o, &y, y.rel, y.relsz, sizeof(ElfW(Rel)), 0, r, n);
	if (a < 0 || b < 0 || c < 0)
		return -1;
	return a + b + c;
}

#else /* no GOT patching on this architecture */

int shim_obj_patch(const struct shim_obj *o, const struct shim_redirect *r,
                   size_t n)
{
	(void)o;
	(void)r;
	(void)n;
	return -1;
}

#endif
