// Scope: whose jobs a caller may see. Every job belongs to a tenant (empty on a server
// without tokens); a caller sees its own tenant's jobs, or every tenant's (admin, or a
// server without tokens). What it may not see does not exist for it: NOT_FOUND, with the
// message a job that never existed gets.
#pragma once

#include <string>

#include "jobstream/v1/jobs.pb.h"

namespace jobstream::auth {

struct Scope {
  std::string tenant;       // the caller's tenant: what its submits belong to
  bool all_tenants = true;  // sees every tenant's jobs

  static Scope Everything() { return Scope{}; }
  static Scope Tenant(std::string tenant) { return Scope{std::move(tenant), false}; }

  bool Sees(const std::string& job_tenant) const {
    return all_tenants || job_tenant == tenant;
  }
  bool Sees(const v1::Job& job) const { return Sees(job.tenant()); }
};

}  // namespace jobstream::auth
