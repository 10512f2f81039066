! Full neighbour lists in CSR form from a half list (each pair once).
!
! vesin's half list holds every pair (i, j, S) once; the kernels need both
! directions, grouped by centre. half_to_full writes the entries of the
! selected centres in one pass over the pairs plus a two-digit counting sort:
! rows in the order of the centres, within a row by neighbour index, then by
! cell shift (lexicographically). The order depends only on the set of pairs,
! never on the order vesin returned them in (which varies with its threads).
!
! Vectors are r_j - r_i + S.box evaluated as vesin does,
! (r_j - r_i) + ((S1 b1 + S2 b2) + S3 b3), and the reverse entry gets the
! exact negation, so the numbers are bit for bit those of a full list.
!
! Threads meet once, so that a thread the system has descheduled holds the
! others up once (OpenMP waits spin first: with another busy process on the
! cores every meeting point can cost a time slice). Each thread first measures
! a contiguous chunk of the pairs and counts the entries of every row in a
! column of its own. From these counts each thread takes a contiguous range of
! rows holding about its share of the entries, and sorts only them: it scans
! all pairs (cheap next to the rest) for the entries of its rows, sorts them by
! neighbour and then by row into its own part of the output, and sorts their
! images. Each row is built by one thread exactly as by a single thread, so the
! output is identical for any number of threads.
module neighbour_lists
  use, intrinsic :: iso_c_binding, only: c_double, c_int, c_int64_t
  implicit none
  private
  public :: expand_half_list

  integer, parameter :: dp = c_double, i8 = c_int64_t

  !> Fewest pairs worth another thread: below this, waking it costs more than it saves.
  integer(i8), parameter :: MIN_PAIRS_PER_THREAD = 2048

contains

  !> See kernels.f90 (half_to_full) for the arguments.
  subroutine expand_half_list(pos, box, pairs, hs, row, atom_label, cut, nthreads, start, atoms, &
                              vec, dist, shifts, label, nkept, dmin, amin, bmin, status)
    !$ use omp_lib, only: omp_get_max_threads, omp_get_thread_num, omp_get_num_threads
    real(dp), contiguous, intent(in) :: pos(:, :)
    real(dp), intent(in) :: box(3, 3), cut
    integer(i8), contiguous, intent(in) :: pairs(:, :)
    integer(c_int), contiguous, intent(in) :: hs(:, :), row(:), atom_label(:)
    integer(c_int), intent(in) :: nthreads
    integer(i8), contiguous, intent(out) :: start(:), atoms(:), shifts(:, :)
    real(dp), contiguous, intent(out) :: vec(:, :), dist(:)
    integer(c_int), contiguous, intent(out) :: label(:)
    integer(i8), intent(out) :: nkept, amin, bmin
    real(dp), intent(out) :: dmin
    integer(c_int), intent(out) :: status

    integer(i8) :: n, nh, nc, ne, nt, t
    ! per thread: entries of each row in its chunk of pairs; scratch counts by neighbour atom
    integer(i8), allocatable :: by_row(:, :), by_atom(:, :)
    ! the next free entry of each row while it is filled
    integer(i8), allocatable :: fill(:)
    ! the entries of the rows sorted by neighbour atom, and the row of each
    integer(i8), allocatable :: order(:)
    integer(c_int), allocatable :: order_row(:)
    ! per thread: pairs within the cut, and the closest of them (a, b, distance)
    integer(i8), allocatable :: t_kept(:), t_ab(:, :)
    real(dp), allocatable :: t_dmin(:), hv(:, :), hd(:)
    logical, allocatable :: t_bad(:)   ! per thread: an atom index out of range

    n = size(pos, 2, kind=i8)
    nh = size(pairs, 2, kind=i8)
    nc = size(start, kind=i8) - 1
    ne = size(dist, kind=i8)
    nkept = 0
    dmin = huge(1.0_dp)
    amin = -1
    bmin = -1
    status = 0
    start = 0
    if (size(row, kind=i8) /= n .or. size(atom_label, kind=i8) /= n .or. &
        size(hs, 2, kind=i8) /= nh .or. size(atoms, kind=i8) /= ne .or. &
        size(vec, 2, kind=i8) /= ne .or. size(shifts, 2, kind=i8) /= ne .or. &
        size(label, kind=i8) /= ne .or. nc < 0) then
      status = 3
      return
    end if
    if (any(row < 0 .or. row > nc)) then
      status = 1
      return
    end if

    nt = 1
    !$ nt = nthreads
    !$ if (nt <= 0) nt = omp_get_max_threads()
    ! the per-thread counts (n + nc each) stay small next to the pairs
    nt = max(1_i8, min(nt, nh / MIN_PAIRS_PER_THREAD, nh / max(n + nc, 1_i8)))
    allocate (hv(3, nh), hd(nh), by_row(nc, nt), by_atom(n, nt), fill(nc))
    allocate (order(2 * nh), order_row(2 * nh))   ! at most two entries per pair
    allocate (t_kept(nt), t_ab(2, nt), t_dmin(nt), t_bad(nt))
    t_kept = 0
    t_bad = .false.
    !$omp parallel num_threads(nt) default(shared)
    call team_member()
    !$omp end parallel
    if (status /= 0) return

    do t = 1, nt
      if (t_kept(t) == 0) cycle
      nkept = nkept + t_kept(t)
      call keep_closest(t_dmin(t), t_ab(1, t), t_ab(2, t), dmin, amin, bmin)
    end do

  contains

    !> One thread's share of the work; the team may be smaller than nt.
    !> The passes are module procedures with the arrays as arguments: reached
    !> by host association, their bounds would be reloaded on every access.
    subroutine team_member()
      integer(i8) :: t, tn, lo, hi, m, r, rlo, rhi
      t = 1
      tn = 1
      !$ t = omp_get_thread_num() + 1
      !$ tn = omp_get_num_threads()

      call chunk(nh, t, tn, lo, hi)
      call measure_pairs(lo, hi, pos, box, pairs, hs, row, cut, hv, hd, by_row(:, t), &
                         t_kept(t), t_dmin(t), t_ab(:, t), t_bad(t))
      !$omp barrier
      ! from here on the counts are only read; every thread takes the same decisions
      m = sum(by_row(:, 1:tn))
      if (any(t_bad(1:tn)) .or. m > ne) then
        if (t == 1) status = merge(1, 2, any(t_bad(1:tn)))
        return
      end if
      call own_rows(by_row(:, 1:tn), t, start, rlo, rhi)
      if (t == tn) start(nc + 1) = m
      if (rlo > rhi) return
      fill(rlo:rhi) = start(rlo:rhi)
      call sort_by_atom(rlo, rhi, start(rlo), pairs, row, cut, hd, by_atom(:, t), order, &
                        order_row)
      lo = start(rlo) + 1
      hi = start(rlo) + sum(by_row(rlo:rhi, 1:tn))
      call sort_by_row(order(lo:hi), order_row(lo:hi), pairs, hs, atom_label, hv, hd, fill, &
                       atoms, vec, dist, shifts, label)
      do r = rlo, rhi
        call sort_images(start(r) + 1, fill(r), atoms, vec, dist, shifts)
      end do
    end subroutine team_member

  end subroutine expand_half_list

  !> Vectors and distances of pairs lo..hi, the number kept (within the cut),
  !> the closest of them (ab, at closest), and how many entries each row gets
  !> (count); bad: an atom index out of range (then the rest is not done).
  subroutine measure_pairs(lo, hi, pos, box, pairs, hs, row, cut, hv, hd, count, kept, &
                           closest, ab, bad)
    integer(i8), intent(in) :: lo, hi
    real(dp), contiguous, intent(in) :: pos(:, :)
    real(dp), intent(in) :: box(3, 3), cut
    integer(i8), contiguous, intent(in) :: pairs(:, :)
    integer(c_int), contiguous, intent(in) :: hs(:, :), row(:)
    real(dp), contiguous, intent(inout) :: hv(:, :), hd(:)
    integer(i8), contiguous, intent(out) :: count(:)
    integer(i8), intent(out) :: kept, ab(2)
    real(dp), intent(out) :: closest
    logical, intent(out) :: bad
    integer(i8) :: p, i, j, n
    real(dp) :: v(3), d, s1, s2, s3
    n = size(pos, 2, kind=i8)
    bad = .false.
    count = 0
    kept = 0
    closest = huge(1.0_dp)
    ab = -1
    do p = lo, hi
      i = pairs(1, p) + 1
      j = pairs(2, p) + 1
      if (i < 1 .or. i > n .or. j < 1 .or. j > n) then
        bad = .true.
        return
      end if
      s1 = real(hs(1, p), dp)
      s2 = real(hs(2, p), dp)
      s3 = real(hs(3, p), dp)
      v(1) = (pos(1, j) - pos(1, i)) + ((s1 * box(1, 1) + s2 * box(1, 2)) + s3 * box(1, 3))
      v(2) = (pos(2, j) - pos(2, i)) + ((s1 * box(2, 1) + s2 * box(2, 2)) + s3 * box(2, 3))
      v(3) = (pos(3, j) - pos(3, i)) + ((s1 * box(3, 1) + s2 * box(3, 2)) + s3 * box(3, 3))
      d = sqrt(v(1) * v(1) + v(2) * v(2) + v(3) * v(3))
      hd(p) = d
      if (.not. (d < cut)) cycle          ! dropped (also NaN)
      hv(:, p) = v
      kept = kept + 1
      call keep_closest(d, min(i, j) - 1, max(i, j) - 1, closest, ab(1), ab(2))
      if (row(i) > 0) count(row(i)) = count(row(i)) + 1
      if (row(j) > 0) count(row(j)) = count(row(j)) + 1
    end do
  end subroutine measure_pairs

  !> The entries of rows rlo..rhi into order(first + 1:) by neighbour atom
  !> (count: per atom, scratch), each pair in turn: entry 2p-1 is (i -> j),
  !> entry 2p is (j -> i); order_row: the row of each.
  subroutine sort_by_atom(rlo, rhi, first, pairs, row, cut, hd, count, order, order_row)
    integer(i8), intent(in) :: rlo, rhi, first
    integer(i8), contiguous, intent(in) :: pairs(:, :)
    integer(c_int), contiguous, intent(in) :: row(:)
    real(dp), intent(in) :: cut
    real(dp), contiguous, intent(in) :: hd(:)
    integer(i8), contiguous, intent(out) :: count(:)
    integer(i8), contiguous, intent(inout) :: order(:)
    integer(c_int), contiguous, intent(inout) :: order_row(:)
    integer(i8) :: p, i, j, a, c, o
    count = 0
    do p = 1, size(hd, kind=i8)
      if (.not. (hd(p) < cut)) cycle
      i = pairs(1, p) + 1
      j = pairs(2, p) + 1
      if (row(i) >= rlo .and. row(i) <= rhi) count(j) = count(j) + 1
      if (row(j) >= rlo .and. row(j) <= rhi) count(i) = count(i) + 1
    end do
    o = first
    do a = 1, size(count, kind=i8)
      c = count(a)
      count(a) = o
      o = o + c
    end do
    do p = 1, size(hd, kind=i8)
      if (.not. (hd(p) < cut)) cycle
      i = pairs(1, p) + 1
      j = pairs(2, p) + 1
      if (row(i) >= rlo .and. row(i) <= rhi) then
        count(j) = count(j) + 1
        order(count(j)) = 2 * p - 1
        order_row(count(j)) = row(i)
      end if
      if (row(j) >= rlo .and. row(j) <= rhi) then
        count(i) = count(i) + 1
        order(count(i)) = 2 * p
        order_row(count(i)) = row(j)
      end if
    end do
  end subroutine sort_by_atom

  !> Entries (of rows `rows`) written to their rows from the offsets in `next`
  !> (a stable sort).
  subroutine sort_by_row(entries, rows, pairs, hs, atom_label, hv, hd, next, atoms, vec, dist, &
                         shifts, label)
    integer(i8), contiguous, intent(in) :: entries(:), pairs(:, :)
    integer(c_int), contiguous, intent(in) :: rows(:), hs(:, :), atom_label(:)
    real(dp), contiguous, intent(in) :: hv(:, :), hd(:)
    integer(i8), contiguous, intent(inout) :: next(:), atoms(:), shifts(:, :)
    real(dp), contiguous, intent(inout) :: vec(:, :), dist(:)
    integer(c_int), contiguous, intent(inout) :: label(:)
    integer(i8) :: k, e, p, fwd, j, o
    real(dp) :: sgn
    do k = 1, size(entries, kind=i8)
      e = entries(k)
      p = (e + 1) / 2
      fwd = iand(e, 1_i8)                 ! 1: i -> j as listed, 0: the reverse
      j = pairs(1 + fwd, p) + 1
      sgn = real(2 * fwd - 1, dp)         ! x * (-1) is exactly -x
      o = next(rows(k)) + 1
      next(rows(k)) = o
      vec(1, o) = sgn * hv(1, p)
      vec(2, o) = sgn * hv(2, p)
      vec(3, o) = sgn * hv(3, p)
      shifts(1, o) = (2 * fwd - 1) * hs(1, p)
      shifts(2, o) = (2 * fwd - 1) * hs(2, p)
      shifts(3, o) = (2 * fwd - 1) * hs(3, p)
      atoms(o) = j - 1
      dist(o) = hd(p)
      label(o) = atom_label(j)
    end do
  end subroutine sort_by_row

  !> Within the row of entries lo..hi, the images of one neighbour (small
  !> cells) in shift order, by insertion sort.
  subroutine sort_images(lo, hi, atoms, vec, dist, shifts)
    integer(i8), intent(in) :: lo, hi
    integer(i8), contiguous, intent(in) :: atoms(:)
    real(dp), contiguous, intent(inout) :: vec(:, :), dist(:)
    integer(i8), contiguous, intent(inout) :: shifts(:, :)
    integer(i8) :: k, e, x, y, sx(3)
    real(dp) :: vx(3), dx
    k = lo
    do while (k < hi)
      if (atoms(k + 1) /= atoms(k)) then   ! one image: nothing to sort
        k = k + 1
        cycle
      end if
      e = k + 1
      do while (e < hi)
        if (atoms(e + 1) /= atoms(k)) exit
        e = e + 1
      end do
      do x = k + 1, e
        sx = shifts(:, x)
        vx = vec(:, x)
        dx = dist(x)
        y = x - 1
        do while (y >= k)
          if (.not. shift_less(sx, shifts(:, y))) exit
          shifts(:, y + 1) = shifts(:, y)
          vec(:, y + 1) = vec(:, y)
          dist(y + 1) = dist(y)
          y = y - 1
        end do
        shifts(:, y + 1) = sx
        vec(:, y + 1) = vx
        dist(y + 1) = dx
      end do
      k = e + 1
    end do
  end subroutine sort_images

  !> Bounds lo..hi of chunk t of tn over 1..total.
  pure subroutine chunk(total, t, tn, lo, hi)
    integer(i8), intent(in) :: total, t, tn
    integer(i8), intent(out) :: lo, hi
    lo = (t - 1) * total / tn + 1
    hi = t * total / tn
  end subroutine chunk

  !> Rows rlo..rhi of thread t of tn: those whose first entry falls in its
  !> share of the entries (count: entries per row and thread), and their
  !> offsets start(rlo:rhi). Empty rows at the end go to the last thread.
  subroutine own_rows(count, t, start, rlo, rhi)
    integer(i8), contiguous, intent(in) :: count(:, :)
    integer(i8), intent(in) :: t
    integer(i8), contiguous, intent(inout) :: start(:)
    integer(i8), intent(out) :: rlo, rhi
    integer(i8) :: r, m, tn, s, owner
    tn = size(count, 2, kind=i8)
    m = sum(count)
    rlo = 1
    rhi = 0
    s = 0
    do r = 1, size(count, 1, kind=i8)
      owner = tn
      if (s < m) owner = s * tn / m + 1
      if (owner == t) then
        if (rhi < rlo) rlo = r
        rhi = r
        start(r) = s
      else if (owner > t) then
        exit
      end if
      s = s + sum(count(r, :))
    end do
  end subroutine own_rows

  !> (d, a, b) replaces (dmin, amin, bmin) if lexicographically smaller, so the
  !> closest pair does not depend on the order pairs are seen in.
  pure subroutine keep_closest(d, a, b, dmin, amin, bmin)
    real(dp), intent(in) :: d
    integer(i8), intent(in) :: a, b
    real(dp), intent(inout) :: dmin
    integer(i8), intent(inout) :: amin, bmin
    if (d < dmin .or. (d == dmin .and. (a < amin .or. (a == amin .and. b < bmin)))) then
      dmin = d
      amin = a
      bmin = b
    end if
  end subroutine keep_closest

  pure logical function shift_less(a, b)
    integer(i8), intent(in) :: a(3), b(3)
    if (a(1) /= b(1)) then
      shift_less = a(1) < b(1)
    else if (a(2) /= b(2)) then
      shift_less = a(2) < b(2)
    else
      shift_less = a(3) < b(3)
    end if
  end function shift_less

end module neighbour_lists
